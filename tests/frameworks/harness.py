"""What the framework tests run on: the real server in a child process of this environment, a
recording WebSocket relay in front of it, spoken questions from espeak-ng as WAV files, and the
framework's client script run in the framework's own virtual environment.

The relay passes every frame through unchanged, in both directions, and writes each one down,
so that a test can assert on what really crossed the wire (which events a framework sent, which
errors the server answered) as well as on what the framework made of it (the client's report).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from benchmarks.server_process import REPOSITORY, stop_process
from benchmarks.turns import with_pauses
from tts.espeak import DEFAULT_RATE_WPM, synthesize

CLIENTS = Path(__file__).resolve().parent / "clients"
SETUP_SCRIPT = "scripts/setup_frameworks.sh"
# One virtual environment per framework (made by scripts/setup_frameworks.sh), so that none of
# their dependencies can disturb the core's.
FRAMEWORK_VENVS = {
    "pipecat": REPOSITORY / ".venv-pipecat",
    "livekit": REPOSITORY / ".venv-livekit",
    "agents": REPOSITORY / ".venv-agents",
}

SERVER_START_TIMEOUT_S = 120.0  # loading the embedded checkpoint on a busy two-core machine
SERVER_STOP_TIMEOUT_S = 10.0
# A whole client run: connect, a spoken question and its reply, a tool round trip or a barge-in
# and the reply after it. The client scripts have their own, shorter scenario limits; this one
# only catches a client that hangs past them.
CLIENT_RUN_TIMEOUT_S = 240.0
RELAY_START_TIMEOUT_S = 10.0
WIRE_RATE = 24_000  # every framework here streams PCM16 at 24 kHz, OpenAI's default
LEADING_SILENCE_MS = 300  # as a microphone picks up before the user speaks
# Headers a Realtime client authenticates or selects the protocol with: the relay forwards them
# to the server as the client sent them.
FORWARDED_HEADERS = ("authorization", "openai-beta", "user-agent")

QUESTION = "what is seven times six"
# One sentence with a pause cut in at the "|": long enough for every framework's default turn
# detection to close the turn there (Smart Turn calls "what is nineteen" complete), short
# enough that the rest comes within the server's merge window.
PAUSED_QUESTION = ("what is nineteen | minus eight", 700, "11")
BARGE_IN_SPEECH = "stop, wait a moment please"
API_KEY = "sk-framework-test"  # the server runs without keys; the frameworks insist on one


def write_speech(text: str, path: Path, lead_ms: int = LEADING_SILENCE_MS) -> Path:
    """`text` spoken by espeak-ng as a 24 kHz mono PCM16 WAV file, after `lead_ms` of silence."""
    pcm, rate, _ = synthesize(text)
    speech = soxr.resample(pcm.astype(np.float32), rate, WIRE_RATE)
    return _write_wav(np.clip(speech, -32768, 32767).astype(np.int16), path, lead_ms)


def write_paused_speech(marked: str, pause_ms: int, path: Path) -> Path:
    """`marked` spoken as one sentence, `pause_ms` of silence cut in at its "|"."""
    audio = with_pauses(marked, "en-us", DEFAULT_RATE_WPM, [pause_ms])
    return _write_wav((np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16), path)


def _write_wav(speech: np.ndarray, path: Path, lead_ms: int = LEADING_SILENCE_MS) -> Path:
    lead = np.zeros(WIRE_RATE * lead_ms // 1000, np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(WIRE_RATE)
        out.writeframes(np.concatenate([lead, speech]).tobytes())
    return path


@contextlib.contextmanager
def server_process(port: int, log_path: Path) -> Iterator[str]:
    """`step-realtime serve` on the embedded default model, in a child process of this
    environment, until the block ends; yields its Realtime URL once /healthz answers."""
    command = [sys.executable, "-m", "server", "serve", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}/healthz", process, log_path)
            yield f"ws://127.0.0.1:{port}/v1/realtime"
        finally:
            stop_process(process, SERVER_STOP_TIMEOUT_S)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited with code {process.returncode}; its log:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer {url} within {SERVER_START_TIMEOUT_S:g} s")


@dataclass
class Wire:
    """Every frame that crossed the relay: `sent` by the framework, `received` from the server,
    as parsed JSON in order, each with its direction ("client" or "server")."""

    frames: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds since the relay started, each
    started: float = field(default_factory=time.monotonic)

    def record(self, side: str, event: dict[str, Any]) -> None:
        self.frames.append((side, event))
        self.times.append(time.monotonic() - self.started)

    def client_events(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [e for side, e in self.frames if side == "client" and _matches(e, type_)]

    def server_events(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [e for side, e in self.frames if side == "server" and _matches(e, type_)]

    def server_errors(self) -> list[dict[str, Any]]:
        return [e["error"] for e in self.server_events("error")]

    def client_types(self) -> list[str]:
        """The event types the framework sent, in order, appends left out (there are hundreds)."""
        return [
            e["type"] for e in self.client_events() if e.get("type") != "input_audio_buffer.append"
        ]

    def dump(self, path: Path) -> None:
        """The wire as JSON lines, audio payloads shortened, for a person reading a failure."""
        with path.open("w") as out:
            for (side, event), at in zip(self.frames, self.times, strict=True):
                out.write(json.dumps({"t": round(at, 3), "from": side, **_shortened(event)}))
                out.write("\n")


def _matches(event: dict[str, Any], type_: str | None) -> bool:
    return type_ is None or event.get("type") == type_


AUDIO_EVENT_TYPES = ("input_audio_buffer.append", "response.output_audio.delta")


def _shortened(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("type") not in AUDIO_EVENT_TYPES:
        return event
    return {
        key: f"<{len(value)} base64 chars>" if key in ("audio", "delta") else value
        for key, value in event.items()
    }


class RecordingRelay:
    """A WebSocket relay on 127.0.0.1 in its own thread: each connection is passed to
    `upstream` (path and query kept, authentication headers forwarded) and every text frame is
    recorded in `wire` before it is passed on."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/").removesuffix("/v1/realtime")
        self.wire = Wire()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="recording-relay", daemon=True)
        self.port = 0

    def __enter__(self) -> RecordingRelay:
        self._thread.start()
        if not self._ready.wait(RELAY_START_TIMEOUT_S):
            raise RuntimeError("the recording relay did not start")
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(SERVER_STOP_TIMEOUT_S)

    @property
    def base(self) -> str:
        """`ws://127.0.0.1:PORT`: the relay's address, to which a client adds its own path."""
        return f"ws://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._relay, "127.0.0.1", 0, max_size=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _relay(self, downstream: ServerConnection) -> None:
        request = downstream.request
        assert request is not None
        headers = {k: v for k, v in request.headers.raw_items() if k.lower() in FORWARDED_HEADERS}
        user_agent = headers.pop("User-Agent", headers.pop("user-agent", None))
        async with connect(
            self.upstream + request.path,
            additional_headers=headers,
            user_agent_header=user_agent,
            max_size=None,
        ) as upstream:
            await _pump_both(downstream, upstream, self.wire)


async def _pump_both(downstream: Any, upstream: Any, wire: Wire) -> None:
    async def pump(source: Any, sink: Any, side: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in source:
                if isinstance(message, str):
                    with contextlib.suppress(ValueError):
                        wire.record(side, json.loads(message))
                await sink.send(message)
        await sink.close()

    tasks = [
        asyncio.create_task(pump(downstream, upstream, "client")),
        asyncio.create_task(pump(upstream, downstream, "server")),
    ]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class ClientRun:
    """One run of a framework client script: its JSON-line report and what crossed the wire."""

    report: list[dict[str, Any]] = field(repr=False)
    wire: Wire = field(repr=False)
    returncode: int
    stderr: str = field(repr=False)

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.report if line.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        lines = self.kind(kind)
        assert lines, f"the client reported no {kind!r} line; stderr:\n{self.stderr[-3000:]}"
        return lines[-1]

    def error_logs(self) -> list[dict[str, Any]]:
        """The framework's own log records at ERROR and above (and uncaught exceptions)."""
        return [line for line in self.kind("log") if line["level"] in ("ERROR", "CRITICAL")]

    def summary(self) -> str:
        """A short account of the run for assertion messages."""
        return (
            f"client exit {self.returncode}; client events: {self.wire.client_types()}; "
            f"server errors: {self.wire.server_errors()}; "
            f"framework errors: {[line['message'][:300] for line in self.error_logs()]}"
        )


def venv_python(framework: str) -> Path:
    """The interpreter of the framework's own virtual environment."""
    return FRAMEWORK_VENVS[framework] / "bin" / "python"


def run_client(
    framework: str, script: str, args: list[str], server_url: str, dump_to: Path
) -> ClientRun:
    """Run `clients/<script>` in the framework's venv against `server_url` through a recording
    relay; the wire is also written to `dump_to` (JSON lines) for reading a failure."""
    with RecordingRelay(server_url) as relay:
        completed = subprocess.run(
            [str(venv_python(framework)), str(CLIENTS / script), "--base", relay.base, *args],
            cwd=CLIENTS,
            capture_output=True,
            text=True,
            timeout=CLIENT_RUN_TIMEOUT_S,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OPENAI_API_KEY": API_KEY},
        )
    relay.wire.dump(dump_to)
    report = []
    for line in completed.stdout.splitlines():
        with contextlib.suppress(ValueError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                report.append(parsed)
    return ClientRun(report, relay.wire, completed.returncode, completed.stderr)
