"""A dropped connection: the client reconnects with backoff and the next question works.

The drop is real: the client talks to the server through a TCP relay on 127.0.0.1 that the
test cuts, as a flaky network or a restarted balancer would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from server.app import create_app
from server.settings import Settings
from step_realtime_client import Backoff, ConnectionLost, RealtimeClient, client_for
from step_realtime_client.events import AudioDelta, Reconnected, SessionEvent
from tests.clients.harness import API_KEY, RunningServer, pipe
from tests.server.espeak_responder import DEFAULT_REPLY, FixedReplyResponder
from tests.support.serving import InProcessServer

EVENT_TIMEOUT_S = 20.0
FAST_BACKOFF = Backoff(attempts=5, base_s=0.05, max_s=0.5)


class Relay:
    """Forwards TCP connections to a target port; `cut()` drops every live one."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()  # no close handshake: the peer sees a dead TCP stream
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def relay_url(running_server: RunningServer) -> AsyncIterator[tuple[str, Relay]]:
    port = int(running_server.url.rsplit(":", 1)[1].split("/")[0])
    relay = Relay(port)
    relay_port = await relay.start()
    yield f"ws://127.0.0.1:{relay_port}/v1/realtime", relay
    await relay.stop()


@pytest.mark.parametrize("dialect", ["realtime", "live"])
async def test_a_dropped_connection_reconnects_and_the_next_question_works(
    relay_url: tuple[str, Relay], question: np.ndarray, dialect: str
) -> None:
    url, relay = relay_url
    session = {"instructions": "be brief"}
    client = client_for(dialect, url, api_key=API_KEY, session=session, backoff=FAST_BACKOFF)
    async with client:
        first_session = client.session["id"]
        relay.cut()
        event = await client.next_event(EVENT_TIMEOUT_S)
        assert isinstance(event, Reconnected)
        assert client.session["id"] != first_session  # a new server session
        assert client.session["instructions"] == "be brief"  # settings re-applied
        reply = await client.ask(question, realtime=False)
    assert relay.connections == 2
    assert reply.status == "completed" and reply.transcript == DEFAULT_REPLY


async def test_a_drop_during_a_reply_raises_and_the_client_recovers(question: np.ndarray) -> None:
    gate = asyncio.Event()  # the reply pauses after its first chunk: the drop hits it mid-way
    served = InProcessServer.of(create_app(FixedReplyResponder(gate=gate), Settings()))
    await served.start()
    relay = Relay(served.port)
    url = f"ws://127.0.0.1:{await relay.start()}/v1/realtime"

    def cut_on_audio(event: object) -> None:
        if isinstance(event, AudioDelta):
            relay.cut()

    try:
        async with RealtimeClient(url, backoff=FAST_BACKOFF) as client:
            with pytest.raises(ConnectionLost) as lost:
                await client.ask(question, realtime=False, on_event=cut_on_audio)
            assert lost.value.reconnected
            gate.set()
            reply = await client.ask(question, realtime=False)
    finally:
        gate.set()
        await relay.stop()
        await served.stop()
    assert reply.transcript == DEFAULT_REPLY


async def test_reconnection_gives_up_after_its_attempts(
    relay_url: tuple[str, Relay], running_server: RunningServer
) -> None:
    url, relay = relay_url
    async with RealtimeClient(
        url, api_key=API_KEY, backoff=Backoff(attempts=2, base_s=0.01, max_s=0.02)
    ) as client:
        await relay.stop()  # the relay is gone: every attempt is refused
        with pytest.raises(ConnectionLost, match="2 reconnection attempts failed"):
            while True:
                event = await client.next_event(EVENT_TIMEOUT_S)
                assert not isinstance(event, SessionEvent)
