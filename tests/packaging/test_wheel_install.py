"""The server as a user installs it: the wheel built from this tree, `pip install`ed into a fresh
virtual environment (torch==2.13.0 first, as the README says, then the wheel, held to
constraints.txt), no script and no extra. `step-realtime serve` from that environment, on its
default settings (the embedded model, the Silero VAD, espeak-ng), must turn ready and hold a
spoken turn with the official `openai` SDK; semantic_vad, whose model is the `semantic` extra's,
is logged once as missing and refused with an error event.

The environment is built once per test session (about a minute: the wheel, then some 1.3 GB of
packages) and nothing of the project's own environment reaches the server: it runs from the
environment's `step-realtime` script, in an empty folder, with no PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI
from openai.types.realtime import (
    InputAudioBufferSpeechStartedEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseDoneEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)

from tests.server.serve_process import ServeProcess
from tests.support.serving import EVENT_TIMEOUT_S
from tests.support.speech import appends, spoken

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "server", "streaming", "tts")  # what the wheel is made of
TORCH = "torch==2.13.0"  # first, as the README says: pip takes the CPU build on this disk
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 300.0  # import torch, load the embedded model, warm the engine and the voice
SEMANTIC_HINT = "pip install step-realtime[semantic]"
SEMANTIC_UPDATE = {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}


def pip(python: Path, *args: str | Path, cwd: Path) -> None:
    subprocess.run([python, "-m", "pip", *args], cwd=cwd, check=True, timeout=INSTALL_TIMEOUT_S)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh environment with the wheel installed the plain way; its bin directory (removed
    after the session: 1.3 GB)."""
    root = tmp_path_factory.mktemp("wheel_install")
    source = root / "source"  # a copy: the build leaves nothing in the tree
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    started = time.monotonic()
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    pip(python, "wheel", "--quiet", "--no-deps", "--wheel-dir", root / "dist", source, cwd=root)
    (wheel,) = (root / "dist").glob("step_realtime-*.whl")
    constraints = REPO / "constraints.txt"
    pip(python, "install", "--quiet", "-c", constraints, TORCH, cwd=root)
    pip(python, "install", "--quiet", "-c", constraints, wheel, cwd=root)
    print(f"wheel install: {time.monotonic() - started:.0f} s")  # shown with -s or on failure
    yield python.parent
    shutil.rmtree(root, ignore_errors=True)


def served_from(bin_dir: Path, cwd: Path) -> ServeProcess:
    """`step-realtime serve` from the installed environment, nothing of the checkout on its path."""
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(cwd)}
    command = [bin_dir / "step-realtime", "serve", "--port", "0"]
    return ServeProcess(command, cwd, env, START_TIMEOUT_S)


@pytest.fixture
def served(installed: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    server = served_from(installed, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_the_installed_package_is_the_wheels(installed: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.metadata as m, server, streaming.default_model as d, tts\n"
        "print(server.__file__); print(d.default_checkpoint())\n"
        "print(sorted(r.split(';')[0] for r in m.requires('step-realtime')))\n"
    )
    out = subprocess.run(
        [installed / "python", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    module, checkpoint, requirements = out.splitlines()
    assert Path(module).is_relative_to(installed.parent) and "site-packages" in module
    assert Path(checkpoint).is_relative_to(installed.parent)  # the embedded model ships in it
    assert "silero-vad<7,>=6.2.3" in requirements or "silero-vad>=6.2.3,<7" in requirements


async def test_serve_from_the_wheel_holds_a_spoken_turn(served: ServeProcess) -> None:
    address = served.address()
    ready = await asyncio.to_thread(served.wait_ready, address)
    assert ready.json()["status"] == "ready"
    client = AsyncOpenAI(api_key="unused", websocket_base_url=f"ws://{address}/v1")
    async with client.realtime.connect(model="step-audio-r1") as connection:
        assert isinstance(await _recv(connection), SessionCreatedEvent)
        # semantic_vad's model is the `semantic` extra's: refused, and the session goes on
        await connection.session.update(session={"type": "realtime", **SEMANTIC_UPDATE})  # type: ignore[typeddict-item]
        error = await _recv(connection)
        assert error.type == "error" and error.error.code == "unsupported_feature"  # type: ignore[union-attr]
        assert SEMANTIC_HINT in error.error.message  # type: ignore[union-attr]
        assert isinstance(await _recv(connection), SessionUpdatedEvent)
        await connection.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}
                },
            }
        )
        for message in appends(spoken("what is seven times six")):
            await connection.input_audio_buffer.append(audio=json.loads(message)["audio"])
        audio = b""
        transcript = ""
        heard = False
        while True:
            event = await _recv(connection)
            if isinstance(event, InputAudioBufferSpeechStartedEvent):
                heard = True  # the default VAD (Silero, from the silero-vad dependency)
            elif isinstance(event, ResponseAudioDeltaEvent):
                audio += base64.b64decode(event.delta)
            elif isinstance(event, ResponseAudioTranscriptDeltaEvent):
                transcript += event.delta
            elif isinstance(event, ResponseDoneEvent):
                break
            elif event.type == "error":
                raise AssertionError(f"error event: {event}")
    assert heard
    assert event.response.status in {"completed", "incomplete"}
    assert transcript.strip() and len(audio) > 24_000 * 2 // 4  # a quarter second or more
    log = served.read_log()
    assert log.count(SEMANTIC_HINT) == 1, log  # said once, at start-up


async def _recv(connection):  # noqa: ANN001, ANN202
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        return await connection.recv()
