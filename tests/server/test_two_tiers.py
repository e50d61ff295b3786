"""Two tiers on 127.0.0.1, as docs/scaling.md section 4 deploys them: one vLLM server
(`streaming.engine.serve_vllm`, the shipped embedded checkpoint) decodes for two front ends
(`step-realtime serve --engine remote`), and HAProxy (Debian's package) balances WebSocket
sessions over the front ends (deploy/haproxy.cfg: least connections), with `/readyz` as its
health check.

Python-client sessions through HAProxy hold spoken turns on both front ends; then a rolling
upgrade: one front end drains mid-reply (`POST /admin/drain`: the reply completes, its sessions
reconnect through HAProxy to the other one and go on), comes back on the same port, and the
other one is killed (SIGKILL) while a question is being spoken: only that question is lost, every
session reconnects to the restarted front end and its next turn is answered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from step_realtime_client import Backoff, RealtimeClient
from step_realtime_client.client import chunks_of
from step_realtime_client.events import AudioDelta, ErrorEvent, Reconnected, SpeechStarted
from step_realtime_client.reply import Reply
from streaming.default_model import SHIPPED_CHECKPOINT
from tests.server.serve_process import (
    Haproxy,
    ServeProcess,
    VllmTier,
    haproxy_command,
    repo_server,
)
from tests.support.speech import spoken


@pytest.fixture(scope="module", autouse=True)
def haproxy_installed() -> None:
    """A missing balancer fails the test (CI installs it), never skips it."""
    if haproxy_command() is None:
        pytest.fail("needs HAProxy: apt-get install haproxy (scripts/setup.sh installs it)")


API_KEY = "sk-two-tiers"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SESSIONS = 4  # two on each front end
# The tier: the embedded model's whole context, room for both front ends' sequences, and a
# small KV cache (64 MiB: tens of thousands of positions of this model).
TIER_FLAGS = (
    *("--max-model-len", "4096", "--max-num-seqs", "16"),
    *("--kv-cache-memory-bytes", str(64 * 1024 * 1024)),
    *("--dtype", "float32", "--enforce-eager"),
)
FRONT_END_FLAGS = (
    *("--host", "127.0.0.1", "--api-keys", API_KEY, "--max-sequences", "8"),
    *("--drain-timeout-seconds", "60"),
)
START_TIMEOUT_S = 600.0  # a hang fails, a busy machine does not
EVENT_TIMEOUT_S = 120.0
# Many quick tries: a reconnection may meet the drained front end before HAProxy's next check
BACKOFF = Backoff(attempts=40, base_s=0.05, max_s=0.5)
QUESTION = "what is seven times six"


@pytest.fixture(scope="module")
def tier() -> Iterator[str]:
    vllm = VllmTier(SHIPPED_CHECKPOINT, *TIER_FLAGS, start_timeout_s=START_TIMEOUT_S)
    try:
        vllm.wait_healthy()
        yield vllm.url
    finally:
        vllm.stop()


def front_end(tier_url: str, *flags: str) -> ServeProcess:
    return repo_server(
        *FRONT_END_FLAGS,
        *("--engine", "remote", "--engine-url", tier_url),
        *flags,
        start_timeout_s=START_TIMEOUT_S,
    )


async def ready(server: ServeProcess) -> str:
    """The front end's 'host:port' once `/readyz` answers 200 (off the loop: sessions are open)."""
    address = await asyncio.to_thread(server.address)
    await asyncio.to_thread(server.wait_ready, address)
    return address


async def sessions_opened(address: str) -> float:
    """The front end's `realtime_sessions_total`."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://{address}/metrics", headers=AUTH)).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "realtime_sessions_total":
                return sample.value
    raise AssertionError(f"no realtime_sessions_total in /metrics of {address}")


def assert_answered(reply: Reply) -> None:
    assert reply.status == "completed", reply
    answer = reply.transcript.lower().replace("-", " ")
    assert "42" in answer or "forty two" in answer, reply.transcript


async def until_reconnected(client: RealtimeClient) -> list[object]:
    """The client's events up to its `Reconnected` (the session is new, on another front end)."""
    seen: list[object] = []
    while not isinstance(event := await client.next_event(EVENT_TIMEOUT_S), Reconnected):
        seen.append(event)
    return seen


async def test_sessions_through_haproxy_survive_a_drain_and_a_kill_of_a_front_end(
    tier: str, tmp_path: Path
) -> None:
    question = spoken(QUESTION)
    first, second = front_end(tier), front_end(tier)  # both start at once
    servers = [first, second]
    proxy: Haproxy | None = None
    clients: list[RealtimeClient] = []
    try:
        a, b = await ready(first), await ready(second)
        proxy = Haproxy([a, b], tmp_path)
        await asyncio.to_thread(proxy.wait_states, {a: "UP", b: "UP"})

        # 1. sessions through HAProxy land on both front ends and each holds a spoken turn
        home: dict[RealtimeClient, str] = {}
        for _ in range(SESSIONS):
            before = {address: await sessions_opened(address) for address in (a, b)}
            client = RealtimeClient(proxy.url, api_key=API_KEY, backoff=BACKOFF)
            await client.connect()
            clients.append(client)
            grew = [
                address for address in (a, b) if await sessions_opened(address) > before[address]
            ]
            assert len(grew) == 1, (before, grew)
            home[client] = grew[0]
        on_a = [c for c in clients if home[c] == a]
        assert len(on_a) == SESSIONS // 2, "least connections puts half the sessions on each"
        replies = await asyncio.gather(*(c.ask(question, realtime=False) for c in clients))
        for reply in replies:
            assert_answered(reply)

        # 2. A drains while it streams a reply: the reply completes; A's sessions are closed
        # (1012) and reconnect through HAProxy to B, which answers their next turns
        b_sessions = await sessions_opened(b)
        drains: list[asyncio.Task[httpx.Response]] = []

        async def drain_a() -> httpx.Response:
            async with httpx.AsyncClient() as http:
                return await http.post(f"http://{a}/admin/drain", headers=AUTH)

        def drain_on_first_audio(event: object) -> None:
            if isinstance(event, AudioDelta) and not drains:
                drains.append(asyncio.create_task(drain_a()))

        reply = await on_a[0].ask(question, realtime=False, on_event=drain_on_first_audio)
        assert (await drains[0]).status_code == 202
        assert_answered(reply)  # the turn in flight during the drain is not lost
        for client in on_a:
            seen = await until_reconnected(client)
            codes = [e.code for e in seen if isinstance(e, ErrorEvent)]
            assert codes == ["server_shutting_down"], seen
        assert await asyncio.to_thread(first.process.wait, EVENT_TIMEOUT_S) == 0
        await asyncio.to_thread(proxy.wait_states, {a: "DOWN", b: "UP"})
        assert await sessions_opened(b) == b_sessions + len(on_a)  # all of them went to B
        replies = await asyncio.gather(*(c.ask(question, realtime=False) for c in clients))
        for reply in replies:
            assert_answered(reply)

        # 3. A comes back (the same port: HAProxy's pool is fixed); B is killed while a
        # question is being spoken: that question is lost, every session moves to A, and its
        # next turn is answered there
        restarted = front_end(tier, "--port", a.rsplit(":", 1)[1])
        servers.append(restarted)
        assert await ready(restarted) == a
        await asyncio.to_thread(proxy.wait_states, {a: "UP", b: "UP"})
        speaker = clients[0]
        speech = question[: len(question) // 2]  # half a question: the turn cannot end
        for chunk in chunks_of(speech):
            await speaker.append_audio(chunk)
        while not isinstance(await speaker.next_event(EVENT_TIMEOUT_S), SpeechStarted):
            pass
        second.process.kill()  # SIGKILL: no drain, no close frame
        for client in clients:
            await until_reconnected(client)
        assert await sessions_opened(a) == SESSIONS  # the restarted A has them all
        replies = await asyncio.gather(*(c.ask(question, realtime=False) for c in clients))
        for reply in replies:
            assert_answered(reply)
    finally:
        for client in clients:
            await client.close()
        if proxy is not None:
            proxy.stop()
        for server in servers:
            await asyncio.to_thread(server.stop)
