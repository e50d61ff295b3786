"""Draining for rolling upgrades (server/drain.py), over real sockets on 127.0.0.1: SIGTERM to a
real server process, `POST /admin/drain` in process, the refusals and the drain's bound."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.app import create_app
from server.cli import main
from server.drain import CLOSE_SERVICE_RESTART, CLOSE_TRY_AGAIN_LATER, DrainingServer
from server.settings import Settings
from tests.server.espeak_responder import FixedReplyResponder
from tests.server.serve_process import ServeProcess, repo_server
from tests.support.serving import EVENT_TIMEOUT_S, recv_until, running
from tests.support.speech import appends

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-drain-test"
DRAIN_TIMEOUT_S = 8.0  # the bound in the process test: well past the reply's ~3 s of speech
EXIT_TIMEOUT_S = 30.0
POLL_S = 0.05
TEXT_QUESTION = {
    "type": "conversation.item.create",
    "item": {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "what is seven times six"}],
    },
}
MANUAL_TURNS = {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}}


async def until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None, float]:
    """Every event up to the close; the close code and when it came (time.monotonic())."""
    events = []
    async with asyncio.timeout(EVENT_TIMEOUT_S + DRAIN_TIMEOUT_S):
        try:
            while True:
                events.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed:
            return events, closed.rcvd.code if closed.rcvd else None, time.monotonic()


def assert_warned_then_closed(events: list[dict[str, Any]], code: int | None) -> None:
    """The drain's warning is the last event, then the close 1012."""
    assert events[-1]["type"] == "error", events[-1]
    error = events[-1]["error"]
    assert error["code"] == "server_shutting_down" and error["type"] == "server_error"
    assert "reconnect" in error["message"]
    assert code == CLOSE_SERVICE_RESTART


async def assert_refused(address: str, headers: dict[str, str] | None = None) -> None:
    """A new session: the `server_shutting_down` error event, then close 1013."""
    async with connect(f"ws://{address}/v1/realtime", additional_headers=headers) as late:
        events, code, _ = await until_closed(late)
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["error"]["code"] == "server_shutting_down"
    assert code == CLOSE_TRY_AGAIN_LATER


@pytest.fixture
def server_process() -> Iterator[ServeProcess]:
    server = repo_server(
        "--responder",
        "tests.server.espeak_responder:paced_responder",
        "--drain-timeout-seconds",
        str(DRAIN_TIMEOUT_S),
    )
    try:
        yield server
    finally:
        server.stop()


async def test_sigterm_finishes_the_reply_refuses_new_sessions_and_exits_0(
    server_process: ServeProcess,
) -> None:
    address = server_process.address()
    realtime = f"ws://{address}/v1/realtime"
    async with (
        connect(realtime) as talker,
        connect(realtime) as pending,
        httpx.AsyncClient() as http,
    ):
        await recv_until(talker, "session.created")
        # a push-to-talk question on its way: audio appended, not committed yet
        await recv_until(pending, "session.created")
        await pending.send(json.dumps(MANUAL_TURNS))
        await recv_until(pending, "session.updated")
        for message in appends(np.zeros(24_000 // 2, np.int16)):
            await pending.send(message)

        await talker.send(json.dumps(TEXT_QUESTION))
        await talker.send(json.dumps({"type": "response.create"}))
        before = await recv_until(talker, "response.output_audio.delta")
        server_process.process.send_signal(signal.SIGTERM)  # while the reply streams
        signalled_at = time.monotonic()

        for _ in range(int(EVENT_TIMEOUT_S / POLL_S)):  # the drain starts within 0.1 s
            ready = await http.get(f"http://{address}/readyz")
            if ready.status_code != 200:
                break
            await asyncio.sleep(POLL_S)
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        await assert_refused(address)

        after, talker_code, talker_closed_at = await until_closed(talker)
        pending_events, pending_code, pending_closed_at = await until_closed(pending)

    # the reply in progress went on to its end, then the warning and the close
    kinds = [e["type"] for e in before + after]
    done = [e for e in after if e["type"] == "response.done"]
    assert len(done) == 1 and done[0]["response"]["status"] == "completed"
    assert "response.output_audio.delta" in [e["type"] for e in after]  # it streamed on
    assert kinds.index("response.done") < len(kinds) - 1
    assert_warned_then_closed(after, talker_code)
    # the session with a question under way was closed by the bound, no sooner
    assert_warned_then_closed(pending_events, pending_code)
    assert pending_closed_at - signalled_at >= DRAIN_TIMEOUT_S - 0.5
    assert talker_closed_at < pending_closed_at
    assert server_process.process.wait(timeout=EXIT_TIMEOUT_S) == 0


async def test_admin_drain_needs_an_api_key_and_refuses_new_sessions_and_secrets() -> None:
    settings = Settings(api_keys=(KEY,), drain_timeout_seconds=30)
    app = create_app(FixedReplyResponder(), settings)
    auth = {"Authorization": f"Bearer {KEY}"}
    async with running(app) as address, httpx.AsyncClient() as http:
        base = f"http://{address}"
        refused = await http.post(f"{base}/admin/drain", headers={"Authorization": "Bearer x"})
        assert refused.status_code == 401 and not app.state.drain.draining
        assert (await http.get(f"{base}/readyz")).status_code == 200

        started = await http.post(f"{base}/admin/drain", headers=auth)
        assert started.status_code == 202
        assert started.json() == {"status": "draining", "sessions": 0, "timeout_seconds": 30}
        again = await http.post(f"{base}/admin/drain", headers=auth)
        assert again.status_code == 202  # idempotent

        ready = await http.get(f"{base}/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        secret = await http.post(f"{base}/v1/realtime/client_secrets", headers=auth)
        assert secret.status_code == 503
        assert secret.json()["error"]["code"] == "server_shutting_down"
        await assert_refused(address, auth)
        metrics = (await http.get(f"{base}/metrics", headers=auth)).text
        assert "realtime_draining 1.0" in metrics
        assert 'realtime_requests_refused_total{reason="server_shutting_down"} 2.0' in metrics
        await asyncio.wait_for(app.state.drain.wait(), EVENT_TIMEOUT_S)  # nothing to wait for
        assert app.state.drain.finished


async def test_the_bound_cancels_a_reply_still_running_then_closes() -> None:
    gate = asyncio.Event()  # the reply stops after its first chunk: never quiet by itself
    app = create_app(FixedReplyResponder(gate=gate), Settings(drain_timeout_seconds=0.5))
    try:
        async with running(app) as address, connect(f"ws://{address}/v1/realtime") as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps(TEXT_QUESTION))
            await ws.send(json.dumps({"type": "response.create"}))
            await recv_until(ws, "response.output_audio.delta")
            app.state.drain.start("test")
            events, code, _ = await until_closed(ws)
            await asyncio.wait_for(app.state.drain.wait(), EVENT_TIMEOUT_S)
    finally:
        gate.set()
    done = [e for e in events if e["type"] == "response.done"]
    assert len(done) == 1 and done[0]["response"]["status"] == "cancelled"
    assert_warned_then_closed(events, code)


async def test_an_idle_session_is_closed_at_once_and_the_drain_ends() -> None:
    app = create_app(FixedReplyResponder(), Settings(drain_timeout_seconds=30))
    async with running(app) as address, connect(f"ws://{address}/v1/realtime") as ws:
        await recv_until(ws, "session.created")
        app.state.drain.start("test")
        events, code, _ = await until_closed(ws)
        await asyncio.wait_for(app.state.drain.wait(), EVENT_TIMEOUT_S)  # not the 30 s bound
    assert [e["type"] for e in events] == ["error"]
    assert_warned_then_closed(events, code)


async def test_sigterm_asks_for_a_drain_and_a_second_one_stops_at_once() -> None:
    app = create_app(FixedReplyResponder(), Settings())
    server = DrainingServer(uvicorn.Config(app), app.state.drain)
    server.handle_exit(signal.SIGTERM, None)  # what the signal handler runs
    assert not server.should_exit and not app.state.drain.draining  # a flag only
    assert not await server.on_tick(1)  # the loop's tick starts the drain
    assert app.state.drain.draining and app.state.drain.reason == "SIGTERM"
    await asyncio.wait_for(app.state.drain.wait(), EVENT_TIMEOUT_S)
    assert await server.on_tick(2)  # drained: uvicorn's main loop ends
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit  # the second SIGTERM: at once, as uvicorn does


def test_a_negative_drain_timeout_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--drain-timeout-seconds", "-1", "--responder", "x:y"]) == 2
    assert "drain_timeout_seconds must be 0 or more" in capsys.readouterr().err
