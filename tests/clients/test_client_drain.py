"""A server that drains for a restart (server/drain.py): the client finishes its reply, then
reconnects through the balancer to another server; a refusal while draining is retried.

The balancer is a TCP relay on 127.0.0.1 in front of two real servers, as a Kubernetes Service
in front of two pods: each new connection goes to the first server whose `/readyz` answers 200,
or, without health checks, to the servers in turn."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from server.app import create_app
from server.drain import DrainingServer
from server.settings import Settings
from step_realtime_client import Backoff, RealtimeClient, ServerRefused
from step_realtime_client.events import AudioDelta, ErrorEvent, Reconnected
from tests.clients.harness import API_KEY, pipe
from tests.server.espeak_responder import DEFAULT_REPLY, FixedReplyResponder
from tests.support.serving import InProcessServer, local_config

EVENT_TIMEOUT_S = 30.0
FAST_BACKOFF = Backoff(attempts=5, base_s=0.05, max_s=0.5)
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Server(InProcessServer):
    """A real server on 127.0.0.1 that drains and stops as `step-realtime serve` does."""

    def __init__(self, settings: Settings) -> None:
        self.responder = FixedReplyResponder()
        self.app = create_app(self.responder, settings)
        super().__init__(DrainingServer(local_config(self.app), self.app.state.drain))


class Balancer:
    """Forwards each new TCP connection to one of `ports`: the first ready one (`/readyz`
    200) with `health_checks`, else each in turn. `routed` lists where each connection went."""

    def __init__(self, ports: list[int], health_checks: bool) -> None:
        self.ports = ports
        self.health_checks = health_checks
        self.routed: list[int] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1/realtime"

    async def _pick(self) -> int:
        if not self.health_checks:
            return self.ports[len(self.routed) % len(self.ports)]
        async with httpx.AsyncClient() as http:
            for port in self.ports:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        return port
        raise ConnectionError("no server is ready")

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            port = await self._pick()
            self.routed.append(port)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except (ConnectionError, OSError):
            writer.transport.abort()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def two_servers() -> AsyncIterator[tuple[Server, Server]]:
    settings = Settings(api_keys=(API_KEY,), drain_timeout_seconds=30)
    first, second = Server(settings), Server(settings)
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await first.stop()
        await second.stop()


async def test_a_draining_server_finishes_the_reply_and_the_client_moves_on(
    two_servers: tuple[Server, Server], question: np.ndarray
) -> None:
    first, second = two_servers
    balancer = Balancer([first.port, second.port], health_checks=True)
    url = await balancer.start()
    drains: list[asyncio.Task[httpx.Response]] = []

    async def drain_first() -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.post(f"http://127.0.0.1:{first.port}/admin/drain", headers=AUTH)

    def drain_on_first_audio(event: object) -> None:
        if isinstance(event, AudioDelta) and not drains:
            drains.append(asyncio.create_task(drain_first()))

    try:
        async with RealtimeClient(url, api_key=API_KEY, backoff=FAST_BACKOFF) as client:
            reply = await client.ask(question, realtime=False, on_event=drain_on_first_audio)
            assert (await drains[0]).status_code == 202
            assert reply.status == "completed" and reply.transcript == DEFAULT_REPLY

            seen = []  # after the reply: the warning, the close, the reconnection
            while not isinstance(event := await client.next_event(EVENT_TIMEOUT_S), Reconnected):
                seen.append(event)
            assert [e.code for e in seen if isinstance(e, ErrorEvent)] == ["server_shutting_down"]

            again = await client.ask(question, realtime=False)
            assert again.status == "completed" and again.transcript == DEFAULT_REPLY
        # the first server stopped by itself once drained, as `serve` does
        assert first.task is not None
        await asyncio.wait_for(first.task, EVENT_TIMEOUT_S)
    finally:
        await balancer.stop()
    assert balancer.routed == [first.port, second.port]
    assert len(first.responder.requests) == 1 and len(second.responder.requests) == 1


async def test_a_refusal_while_draining_is_tried_again_elsewhere(
    two_servers: tuple[Server, Server], question: np.ndarray
) -> None:
    first, second = two_servers
    first_url = f"ws://127.0.0.1:{first.port}/v1/realtime"
    # a session with a question under way (push-to-talk, not committed) keeps the first
    # server draining: it refuses new sessions all along
    async with connect(first_url, additional_headers=AUTH) as pending:
        await pending.recv()  # session.created
        manual = {"audio": {"input": {"turn_detection": None}}}
        await pending.send(json.dumps({"type": "session.update", "session": manual}))
        await pending.recv()  # session.updated
        audio = base64.b64encode(np.zeros(12_000, np.int16).tobytes()).decode()
        await pending.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        first.app.state.drain.start("test")

        no_retries = RealtimeClient(first_url, api_key=API_KEY, backoff=Backoff(attempts=0))
        with pytest.raises(ServerRefused, match="shutting down") as refused:
            await no_retries.connect()
        assert refused.value.retryable

        balancer = Balancer([first.port, second.port], health_checks=False)  # a stale one
        url = await balancer.start()
        try:
            async with RealtimeClient(url, api_key=API_KEY, backoff=FAST_BACKOFF) as client:
                reply = await client.ask(question, realtime=False)
        finally:
            await balancer.stop()
    assert balancer.routed == [first.port, second.port]
    assert reply.status == "completed" and reply.transcript == DEFAULT_REPLY
