"""Fail at start-up, not per connection (server/startup.py): a missing part stops `serve` with one
clear message and exit status 1, or, where a fallback is defined (semantic_vad), is logged once
and answered with an error event; `/readyz` answers 503 until the warm-up is done; a session
whose set-up raises gets the `server_error` event and close 1011. Real sockets on 127.0.0.1;
the missing packages are simulated by empty stand-ins earlier on the child's PYTHONPATH."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server import app as app_module
from server.app import create_app
from server.cli import load_responder
from server.settings import Settings
from server.startup import StartupError
from streaming.turns import end_of_turn, vad
from tests.server.espeak_responder import FixedReplyResponder
from tests.server.serve_process import ServeProcess, repo_server
from tests.server.test_app import metric_samples, url
from tests.server.warm_up_responders import FAILURE, WarmUpResponder
from tests.support.serving import EVENT_TIMEOUT_S, recv_until, running, serving
from tts import get_backend
from tts.base import SAMPLE_RATE, SpeechStream, TTSBackend, speak_once

REPO = Path(__file__).resolve().parents[2]
RESPONDER = "tests.server.espeak_responder:FixedReplyResponder"
EXIT_TIMEOUT_S = 120.0  # a child that imports the server on a busy machine
INSTALL_HINT = "pip install step-realtime[semantic]"
SEMANTIC_UPDATE = {
    "type": "session.update",
    "session": {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
}


def missing(tmp_path: Path, package: str) -> dict[str, str]:
    """A child environment in which `package` is an empty stand-in: its model file is absent,
    as where the package is not installed (the server finds the file without importing it)."""
    shadow = tmp_path / "shadow"
    (shadow / package).mkdir(parents=True)
    (shadow / package / "__init__.py").write_text("")
    return {**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{REPO}"}


def serve(env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "server", "serve", "--port", "0", *flags]
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S
    )


def assert_one_error_line(stderr: str, *fragments: str, traceback: bool = False) -> str:
    """The last line is the one `error: ...` message (and no traceback, unless allowed)."""
    assert traceback or "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in last, last
    return last


# --- a missing part stops `serve` --------------------------------------------------------------


def test_serve_without_the_silero_model_exits_1_with_one_message(tmp_path: Path) -> None:
    done = serve(missing(tmp_path, "silero_vad"), "--responder", RESPONDER)
    assert done.returncode == 1
    assert_one_error_line(done.stderr, "silero VAD", "pip install 'silero-vad", "--vad webrtc")


def test_serve_defaulting_to_semantic_vad_without_smart_turn_exits_1(tmp_path: Path) -> None:
    env = missing(tmp_path, "pipecat")
    done = serve(env, "--turn-detection", "semantic_vad", "--responder", RESPONDER)
    assert done.returncode == 1
    assert_one_error_line(done.stderr, "--turn-detection semantic_vad", INSTALL_HINT)


def test_a_failed_warm_up_keeps_readyz_503_then_stops_serve_with_exit_1() -> None:
    server = repo_server("--responder", "tests.server.warm_up_responders:failing_warm_up")
    try:
        address = server.address()
        readyz = httpx.get(f"http://{address}/readyz")  # the warm-up takes a second
        assert readyz.status_code == 503 and readyz.json()["status"] == "not ready"
        assert server.process.wait(timeout=EXIT_TIMEOUT_S) == 1
    finally:
        server.stop()
    stderr = "".join(server.log) + "".join(_rest(server))
    # the log has the warm-up's traceback (JSON); the last line says why the server stopped
    assert_one_error_line(stderr, "warm-up failed", FAILURE, traceback=True)


def _rest(server: ServeProcess) -> Iterator[str]:
    """The log lines queued after the address (the process has exited: they end)."""
    while True:
        try:
            yield server.lines.get(timeout=1)
        except queue.Empty:
            return


def test_an_unknown_default_voice_is_refused_at_start_up() -> None:
    with pytest.raises(StartupError, match="--default-voice 'nobody' is not one of"):
        create_app(FixedReplyResponder(), Settings(default_voice="nobody"))


# --- semantic_vad without its model: logged once, refused per session ------------------------


@pytest.fixture
def no_smart_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent() -> Path:
        raise FileNotFoundError(end_of_turn.SEMANTIC_INSTALL_HINT)

    monkeypatch.setattr(end_of_turn, "smart_turn_model_path", absent)


@pytest.mark.usefixtures("no_smart_turn")
async def test_without_smart_turn_semantic_vad_is_logged_once_and_refused_per_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="server.startup"):
        app = create_app(FixedReplyResponder(), Settings())
    warnings = [r.getMessage() for r in caplog.records if r.name == "server.startup"]
    assert len(warnings) == 1 and INSTALL_HINT in warnings[0]
    async with running(app) as address:
        async with connect(url(address)) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps(SEMANTIC_UPDATE))
            events = await recv_until(ws, "session.updated")
            errors = [e["error"] for e in events if e["type"] == "error"]
            assert len(errors) == 1
            assert errors[0]["code"] == "unsupported_feature"
            assert errors[0]["param"] == "session.audio.input.turn_detection.type"
            assert INSTALL_HINT in errors[0]["message"]
            session = events[-1]["session"]
            assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
            await ws.send(json.dumps({"type": "session.update", "session": {"instructions": "x"}}))
            await recv_until(ws, "session.updated")  # the session goes on
        async with httpx.AsyncClient() as http:  # a client secret asking for it: 400
            body = {"session": {"type": "realtime", **SEMANTIC_UPDATE["session"]}}
            minted = await http.post(f"http://{address}/v1/realtime/client_secrets", json=body)
    assert minted.status_code == 400
    assert minted.json()["error"]["code"] == "unsupported_feature"
    assert len([r for r in caplog.records if r.name == "server.startup"]) == 1  # once


@pytest.mark.usefixtures("no_smart_turn")
def test_without_smart_turn_a_semantic_vad_default_is_refused_in_process() -> None:
    with pytest.raises(StartupError, match=r"semantic_vad needs `pip install step-realtime"):
        create_app(FixedReplyResponder(), Settings(turn_detection="semantic_vad"))


def test_without_the_silero_model_create_app_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent() -> Path:
        raise FileNotFoundError("the silero VAD needs its model file")

    monkeypatch.setattr(vad, "silero_model_path", absent)
    with pytest.raises(StartupError, match="silero VAD needs its model file; or serve with"):
        create_app(FixedReplyResponder(), Settings(vad="silero"))
    create_app(FixedReplyResponder(), Settings(vad="webrtc"))  # webrtcvad needs no file


# --- /readyz waits for the warm-up ---------------------------------------------------------------


async def test_readyz_answers_503_until_the_warm_up_is_done() -> None:
    gate = asyncio.Event()
    app = create_app(WarmUpResponder(gate), Settings())
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    async with serving(config) as address, httpx.AsyncClient() as http:
        before = await http.get(f"http://{address}/readyz")
        gate.set()
        after = await _ready(http, address)
    assert before.status_code == 503 and before.json()["status"] == "not ready"
    assert after.status_code == 200 and after.json()["status"] == "ready"


async def _ready(http: httpx.AsyncClient, address: str) -> httpx.Response:
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while True:
            response = await http.get(f"http://{address}/readyz")
            if response.status_code == 200:
                return response
            await asyncio.sleep(0.02)


# --- a session whose set-up raises: error event, close 1011 -------------------------------------


async def until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    events = []
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        try:
            while True:
                events.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed:
            return events, closed.rcvd.code if closed.rcvd else None


@pytest.fixture
def broken(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bool]]:
    """`Session` (with it its turn detection and VAD) and `Connection` in server/app.py raise
    while `broken[name]` is set."""
    flags = {"Session": False, "Connection": False, "vad": False}
    internals = "secret set-up detail"

    def failing(name: str, real: Any) -> Any:
        def make(*args: Any, **kwargs: Any) -> Any:
            if flags[name]:
                raise RuntimeError(internals)
            return real(*args, **kwargs)

        return make

    for name in ("Session", "Connection"):
        monkeypatch.setattr(app_module, name, failing(name, getattr(app_module, name)))
    real_path = vad.silero_model_path

    def model_path() -> Path:  # the file vanished after start-up
        if flags["vad"]:
            raise FileNotFoundError(internals)
        return real_path()

    monkeypatch.setattr(vad, "silero_model_path", model_path)
    yield flags


@pytest.mark.parametrize("part", ["Session", "Connection", "vad"])
async def test_a_session_whose_set_up_raises_gets_server_error_and_1011(
    broken: dict[str, bool], part: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(create_app(FixedReplyResponder(), Settings(vad="silero"))) as address:
        broken[part] = True
        async with connect(url(address)) as ws:
            events, code = await until_closed(ws)
        assert [e["type"] for e in events] == ["error"]
        error = events[0]["error"]
        assert error["code"] == "server_error" and error["type"] == "server_error"
        assert "secret" not in error["message"]
        assert code == 1011
        failures = [r for r in caplog.records if r.name == "server.app" and r.exc_info]
        assert len(failures) == 1 and "set-up failed" in failures[0].getMessage()
        broken[part] = False
        async with connect(url(address)) as ws:  # the server goes on
            await recv_until(ws, "session.created")
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"http://{address}/readyz")).json()
            samples = metric_samples((await http.get(f"http://{address}/metrics")).text)
    assert ready["sessions"] == 0  # the failed session's count was given back
    assert samples[("realtime_connections_closed_total", (("reason", "server_error"),))] == 1


# --- the responder's parts ----------------------------------------------------------------------


def test_an_unimportable_responder_is_one_error_line() -> None:
    with pytest.raises(SystemExit) as stopped:
        load_responder("no_such_module_here:factory", Settings())
    assert str(stopped.value).startswith("error: --responder no_such_module_here:factory: ")


async def test_the_warm_up_speaks_a_word_and_fails_without_a_voice() -> None:
    backend = get_backend("espeak")
    try:
        assert await speak_once(backend) > SAMPLE_RATE // 10  # "ready": a few tenths of a second
    finally:
        await backend.close()

    class Voiceless(TTSBackend):
        def voices(self) -> list[str]:
            return []

        def open_stream(self, voice: str, rate: float = 1.0) -> SpeechStream:
            raise AssertionError("not reached")

    with pytest.raises(RuntimeError, match="no voice"):
        await speak_once(Voiceless())
