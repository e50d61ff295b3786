"""Hostile and careless clients (issue 17), over real sockets on 127.0.0.1 against the server as
`serve` runs it (`server.edge.server_config`: the guarded uvicorn protocols). Every test sends
its bad input and then holds a normal spoken turn, on the same connection where the session
should survive it, or on a new one where closing was the right answer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from server.app import create_app
from server.connection import Outbox, Queued
from server.edge import origin_allowed, server_config
from server.logs import JsonFormatter
from server.settings import Settings
from streaming.responder import Responder
from tests.server.espeak_responder import FixedReplyResponder
from tests.server.test_app import metric_samples
from tests.support.serving import EVENT_TIMEOUT_S, recv_until, serving
from tests.support.speech import appends, spoken

KEY = "sk-hardening-test-key"


# --- the server as `serve` runs it, and a spoken turn -------------------------------------------


@contextlib.asynccontextmanager
async def guarded(
    settings: Settings | None = None,
    responder: Responder | None = None,
    log_level: str = "warning",
) -> AsyncIterator[tuple[str, Any]]:
    """`create_app` under `server_config` (as `serve` runs it) on 127.0.0.1 and a free port;
    yields ('host:port', app)."""
    settings = settings or Settings()
    app = create_app(responder or FixedReplyResponder(), settings)
    config = server_config(
        app,
        settings,
        host="127.0.0.1",
        port=0,
        log_level=log_level,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    async with serving(config) as address:
        yield address, app


def ws_url(address: str) -> str:
    return f"ws://{address}/v1/realtime?model=step-audio-r1"


@functools.cache
def question() -> tuple[str, ...]:
    """'what is seven times six', spoken by espeak-ng, as 20 ms appends."""
    return tuple(appends(spoken("what is seven times six")))


async def spoken_turn(
    ws: ClientConnection, statuses: tuple[str, ...] = ("completed",)
) -> list[dict[str, Any]]:
    """Say the question; the reply must come back spoken, with one of `statuses` (the tiny
    random model stops at its token limit: `incomplete`)."""
    for message in question():
        await ws.send(message)
    events = await recv_until(ws, "response.done")
    kinds = [event["type"] for event in events]
    assert "input_audio_buffer.speech_started" in kinds
    assert "response.output_audio.delta" in kinds
    assert events[-1]["response"]["status"] in statuses
    return events


async def new_session_turn(address: str, **options: Any) -> None:
    """A new connection holds a spoken turn."""
    async with connect(ws_url(address), **options) as ws:
        await recv_until(ws, "session.created")
        await spoken_turn(ws)


async def metrics_of(address: str, headers: dict[str, str] | None = None) -> dict:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{address}/metrics", headers=headers)
    assert response.status_code == 200
    return metric_samples(response.text)


def event(**fields: Any) -> str:
    return json.dumps({"event_id": "evt_bad", **fields})


async def error_for(ws: ClientConnection, message: str | bytes) -> dict[str, Any]:
    await ws.send(message)
    return (await recv_until(ws, "error"))[-1]["error"]


# --- inputs that used to break a session ------------------------------------------------------

NESTED = "[" * 1000 + "]" * 1000


def nested_tools(depth: int) -> str:
    """A `session.update` whose one tool's schema nests `depth` objects (written as text:
    `json` itself cannot encode it)."""
    head = (
        '{"event_id": "evt_bad", "type": "session.update", "session": {"type": "realtime", '
        '"tools": [{"type": "function", "name": "deep", "parameters": '
    )
    level = '{"type": "object", "properties": {"x": '
    return head + level * depth + '{"type": "string"}' + "}}" * depth + "}]}}"


# (id, message, expected code)
BAD_INPUTS = [
    ("nested_array", NESTED, "invalid_json"),
    ("nested_in_tools", nested_tools(1000), "invalid_json"),
    ("nested_object", '{"type": "session.update", "a": ' * 70 + "1" + "}" * 70, "invalid_json"),
    (
        "surrogate_in_instructions",
        event(type="session.update", session={"type": "realtime", "instructions": "\ud800"}),
        "invalid_json",
    ),
    (
        "surrogate_in_text_item",
        event(
            type="conversation.item.create",
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "seven \udfff times six"}],
            },
        ),
        "invalid_json",
    ),
    ("surrogate_in_key", '{"type": "response.create", "\\ud83d": 1}', "invalid_json"),
    ("nan_temperature", '{"type": "response.create", "response": {"temperature": NaN}}',
     "invalid_json"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("message", "code"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
async def test_bad_input_is_refused_and_the_session_goes_on(message: str, code: str) -> None:
    async with guarded() as (address, _), connect(ws_url(address)) as ws:
        await recv_until(ws, "session.created")
        error = await error_for(ws, message)
        assert error["code"] == code
        assert error["message"] and "Traceback" not in error["message"]
        await spoken_turn(ws)
        # a later text turn is unharmed too: nothing bad was stored
        await ws.send(event(type="response.create", response={"output_modalities": ["text"]}))
        done = (await recv_until(ws, "response.done"))[-1]
        assert done["response"]["status"] == "completed"


async def test_a_client_secret_request_is_parsed_like_a_message() -> None:
    settings = Settings(api_keys=(KEY,))
    auth = {"Authorization": f"Bearer {KEY}"}
    async with guarded(settings) as (address, app), httpx.AsyncClient() as http:
        endpoint = f"http://{address}/v1/realtime/client_secrets"
        bodies = [
            NESTED,
            '{"session": ' + nested_tools(200).split('"session": ', 1)[1][:-1] + "}",
            '{"session": {"type": "realtime", "instructions": "\\ud800"}}',
            '{"expires_after": {"seconds": NaN}}',
        ]
        for body in bodies:
            answer = await http.post(endpoint, content=body, headers=auth)
            assert answer.status_code == 400, body[:60]
            assert answer.json()["error"]["code"] == "invalid_json"
        assert app.state.keys.outstanding(KEY) == 0  # nothing was minted for them
        minted = await http.post(endpoint, json={"session": {"type": "realtime"}}, headers=auth)
        assert minted.status_code == 200
        secret = minted.json()["value"]
        await new_session_turn(address, additional_headers={"Authorization": f"Bearer {secret}"})


async def test_an_exception_escaping_the_session_closes_1011_without_internals(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: no known input makes the session machine raise any more, so a session
    whose `receive` raises on one marker message stands in for the next unknown bug."""
    from server import app as app_module

    internals = "secret internal detail"

    class FaultySession(app_module.Session):  # type: ignore[misc, name-defined]
        def receive(self, message: str | bytes, now: float) -> list[Any]:
            if message == "boom":
                raise RuntimeError(internals)
            return super().receive(message, now)

    monkeypatch.setattr(app_module, "Session", FaultySession)
    async with guarded() as (address, _):
        async with connect(ws_url(address)) as ws:
            created = (await recv_until(ws, "session.created"))[-1]
            error = await error_for(ws, "boom")
            assert error["code"] == "server_error" and error["type"] == "server_error"
            assert internals not in json.dumps(error)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        failures = [r for r in caplog.records if r.name == "server.connection" and r.exc_info]
        assert [getattr(r, "session_id", None) for r in failures] == [created["session"]["id"]]
        await new_session_turn(address)
        samples = await metrics_of(address)
    assert samples[("realtime_connections_closed_total", (("reason", "server_error"),))] == 1


# --- resources a client can hold -------------------------------------------------------------


async def test_a_client_that_never_reads_is_closed_and_memory_stays_bounded() -> None:
    """A raw client (nothing in it reads the socket, a small receive buffer) asks for thousands
    of session.updated events (about 800 bytes each): once the socket buffers are full the
    outbox grows to twice its high-water mark, the server stops reading the client, and when
    the queue has not moved for `send_stall_seconds` it aborts the socket."""
    settings = Settings(
        send_queue_bytes=16 * 1024, send_stall_seconds=1.0, ws_ping_interval_seconds=600
    )
    update = Frame(
        Opcode.TEXT,
        event(type="session.update", session={"type": "realtime", "instructions": "x"}).encode(),
    ).serialize(mask=True, extensions=[])
    async with guarded(settings) as (address, app):
        _, writer = await raw_handshake(address, receive_buffer=4096)
        sent = 0
        with contextlib.suppress(TimeoutError, ConnectionError):
            for _ in range(20_000):  # ~16 MB of answers: more than the socket buffers hold
                writer.write(update)
                await asyncio.wait_for(writer.drain(), 2.0)  # blocks once we are not read
                sent += 1
        assert sent > 1000
        await eventually(lambda: app.state.active_sessions == 0)
        writer.close()
        samples = await metrics_of(address)
        assert samples[("realtime_connections_closed_total", (("reason", "not_reading"),))] == 1
        await new_session_turn(address)


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (at most `EVENT_TIMEOUT_S`) for `condition` to hold."""
    for _ in range(int(EVENT_TIMEOUT_S / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


async def raw_handshake(
    address: str, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake by hand (with `SO_RCVBUF` = `receive_buffer`, if given), for a
    client that then reads nothing and answers nothing."""
    host, port = address.split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        b"GET /v1/realtime HTTP/1.1\r\nHost: " + address.encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), EVENT_TIMEOUT_S)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_a_dead_peer_is_dropped_by_the_ping_timeout() -> None:
    settings = Settings(ws_ping_interval_seconds=0.2, ws_ping_timeout_seconds=0.3)
    async with guarded(settings) as (address, app):
        reader, writer = await raw_handshake(address)  # then no pong, ever
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(EVENT_TIMEOUT_S):
                while await reader.read(4096):  # pings (and session.created) until the drop
                    pass
        writer.close()
        await new_session_turn(address)


async def test_a_message_inflating_past_the_limit_is_refused() -> None:
    """permessage-deflate: the cap is on the inflated size. Over `max_message_bytes` gets an
    error event; over twice it closes 1009. A few KB on the wire either way."""
    settings = Settings(max_message_bytes=64 * 1024)
    over = event(type="input_audio_buffer.append", audio="A" * 100_000)
    far_over = event(type="input_audio_buffer.append", audio="A" * 1_000_000)
    async with guarded(settings) as (address, _):
        async with connect(ws_url(address)) as ws:  # compression is on by default
            await recv_until(ws, "session.created")
            assert (await error_for(ws, over))["code"] == "message_too_large"
            await spoken_turn(ws)
            await ws.send(far_over)
            with pytest.raises(ConnectionClosed) as closed:
                await recv_until(ws, "never")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await new_session_turn(address)


async def test_silent_connections_do_not_hold_slots() -> None:
    """Two slots; two clients that only send `input_audio_buffer.clear` and silence are closed
    as idle (client events are not activity); then a third client gets a slot and talks."""
    settings = Settings(max_sessions=2, idle_timeout_seconds=0.5)
    silence = event(type="input_audio_buffer.append", audio=base64.b64encode(bytes(960)).decode())

    async def closed_as_idle() -> str:
        async with connect(ws_url(address)) as ws:
            await recv_until(ws, "session.created")
            sender = asyncio.create_task(_keep_clearing(ws, silence))
            try:
                error = (await recv_until(ws, "error"))[-1]["error"]
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            return str(error["code"])

    async with guarded(settings) as (address, _):
        codes = await asyncio.gather(closed_as_idle(), closed_as_idle())
        assert codes == ["session_idle_timeout"] * 2
        await new_session_turn(address)


async def _keep_clearing(ws: ClientConnection, silence: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.send(silence)
            await ws.send(event(type="input_audio_buffer.clear"))
            await asyncio.sleep(0.02)


async def test_speech_and_replies_keep_a_session_alive_past_the_idle_timeout() -> None:
    """Idle counts nothing heard and no reply: a turn spoken at the pace of a microphone, and
    the reply's playing time, keep the session open longer than the idle timeout; after that
    it closes as idle."""
    settings = Settings(idle_timeout_seconds=1.0)
    async with guarded(settings) as (address, _), connect(ws_url(address)) as ws:
        await recv_until(ws, "session.created")
        for message in question():  # 20 ms appends at 20 ms: about 3 s of speech
            await ws.send(message)
            await asyncio.sleep(0.02)
        events = await recv_until(ws, "response.done")
        assert events[-1]["response"]["status"] == "completed"
        assert all(e["type"] != "error" for e in events)
        error = (await recv_until(ws, "error"))[-1]["error"]
        assert error["code"] == "session_idle_timeout"


async def test_raw_sockets_that_never_handshake_are_dropped() -> None:
    settings = Settings(handshake_timeout_seconds=0.3)
    async with guarded(settings) as (address, _):
        host, port = address.split(":")
        opened = [await asyncio.open_connection(host, int(port)) for _ in range(20)]
        slow_reader, slow_writer = await asyncio.open_connection(host, int(port))
        slow_writer.write(b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        for reader, _ in [*opened, (slow_reader, slow_writer)]:
            assert await asyncio.wait_for(reader.read(), EVENT_TIMEOUT_S) == b""  # closed
        for _, writer in [*opened, (slow_reader, slow_writer)]:
            writer.close()
        samples = await metrics_of(address)
        assert (
            samples[("realtime_requests_refused_total", (("reason", "handshake_timeout"),))] == 21
        )
        await new_session_turn(address)


async def test_http_bodies_are_capped_and_slow_ones_end_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(max_http_body_bytes=64 * 1024, http_body_timeout_seconds=0.5)
    async with guarded(settings) as (address, _), httpx.AsyncClient() as http:
        endpoint = f"http://{address}/v1/realtime/client_secrets"
        big = await http.post(endpoint, content=b" " * (100 * 1024 * 1024))
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(100):
                yield b" " * 4096

        chunked = await http.post(endpoint, content=chunks())
        assert chunked.status_code == 413
        host, port = address.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/realtime/client_secrets HTTP/1.1\r\nHost: " + address.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        head = await asyncio.wait_for(reader.read(100), EVENT_TIMEOUT_S)  # it never sends the rest
        assert head.startswith(b"HTTP/1.1 408")
        writer.close()
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/realtime/client_secrets HTTP/1.1\r\nHost: " + address.encode() + b"\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        await writer.drain()
        writer.close()  # a slow body that disconnects
        await asyncio.sleep(0.2)
        await new_session_turn(address)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_oversized_headers_are_answered() -> None:
    async with guarded() as (address, _):
        host, port = address.split(":")
        upgrade = (
            b"GET /v1/realtime HTTP/1.1\r\nHost: " + address.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        )
        plain = b"GET /healthz HTTP/1.1\r\nHost: " + address.encode() + b"\r\n"
        for head, size in ((upgrade, 9_000), (plain, 40_000), (upgrade, 40_000)):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(head + b"X-Big: " + b"a" * size + b"\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(200), EVENT_TIMEOUT_S)
            assert answer.startswith(b"HTTP/1.1 431"), (head[:20], size, answer)
            writer.close()
        await new_session_turn(address)


# --- access -------------------------------------------------------------------------------------


async def test_refused_handshakes_are_logged_once_and_never_as_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with guarded(Settings(api_keys=(KEY,)), log_level="info") as (address, _):
        for _ in range(20):
            with pytest.raises(InvalidStatus):
                async with connect(ws_url(address), additional_headers={"Authorization": "x"}):
                    pass
        await new_session_turn(address, additional_headers={"Authorization": f"Bearer {KEY}"})
        samples = await metrics_of(address, {"Authorization": f"Bearer {KEY}"})
    refusals = [r for r in caplog.records if getattr(r, "reason", None) == "invalid_api_key"]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if "WebSocket" in r.getMessage()]  # uvicorn's lines
    assert samples[("realtime_requests_refused_total", (("reason", "invalid_api_key"),))] == 20


async def test_no_credential_reaches_a_log_line() -> None:
    secret = "sk-do-not-log-me-0123456789"
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(logging.INFO)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        async with guarded(Settings(api_keys=(KEY,))) as (address, _):
            async with httpx.AsyncClient() as http:
                await http.get(f"http://{address}/healthz?api_key={secret}&model=m")
            with pytest.raises(InvalidStatus):
                async with connect(
                    f"ws://{address}/v1/realtime?api_key={secret}",
                    additional_headers={"Authorization": f"Bearer {secret}"},
                    subprotocols=[f"openai-insecure-api-key.{secret}"],  # type: ignore[list-item]
                ):
                    pass
            logging.getLogger("server.test").info("Authorization: Bearer %s", secret)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert any("/healthz?api_key=[redacted]&model=m" in line for line in lines)
    assert lines and not [line for line in lines if secret in line]


async def test_api_docs_are_off_unless_asked_for() -> None:
    paths = ("/docs", "/redoc", "/openapi.json")
    async with guarded() as (address, _), httpx.AsyncClient() as http:
        for path in paths:
            assert (await http.get(f"http://{address}{path}")).status_code == 404
        await new_session_turn(address)
    async with guarded(Settings(api_docs=True)) as (address, _), httpx.AsyncClient() as http:
        for path in paths:
            assert (await http.get(f"http://{address}{path}")).status_code == 200


async def test_what_is_open_with_keys_configured() -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    async with guarded(Settings(api_keys=(KEY,))) as (address, _), httpx.AsyncClient() as http:
        base = f"http://{address}"
        assert (await http.get(f"{base}/healthz")).status_code == 200
        assert (await http.get(f"{base}/readyz")).status_code == 200
        assert (await http.get(f"{base}/metrics")).status_code == 401
        assert (await http.get(f"{base}/metrics", headers=auth)).status_code == 200
        assert (await http.post(f"{base}/v1/realtime/client_secrets", json={})).status_code == 401
        with pytest.raises(InvalidStatus):
            async with connect(ws_url(address)):
                pass
        await new_session_turn(address, additional_headers=auth)
    open_metrics = Settings(api_keys=(KEY,), open_metrics=True)
    async with guarded(open_metrics) as (address, _), httpx.AsyncClient() as http:
        assert (await http.get(f"http://{address}/metrics")).status_code == 200


async def test_browser_origins_are_checked() -> None:
    settings = Settings(allowed_origins=("https://app.example",))
    async with guarded(settings) as (address, _), httpx.AsyncClient() as http:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(address), origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        posted = await http.post(
            f"http://{address}/v1/realtime/client_secrets",
            json={},
            headers={"Origin": "http://evil.example"},
        )
        assert posted.status_code == 403 and posted.json()["error"]["code"] == "origin_not_allowed"
        # a page of this server's own host, and one on the allow-list, may talk
        await new_session_turn(address, origin=f"http://{address}")
        port = address.split(":")[1]  # the same server under another loopback name
        await new_session_turn(address, origin=f"http://localhost:{port}")
        await new_session_turn(address, origin="https://app.example")
        await new_session_turn(address)  # not a browser: no Origin


def test_origin_rules() -> None:
    allowed = ("https://app.example",)
    assert origin_allowed(None, "127.0.0.1:8000", ())  # not a browser
    assert origin_allowed("https://APP.example/", "h", allowed)
    assert origin_allowed("http://localhost:8000", "127.0.0.1:8000", ())
    assert not origin_allowed("http://localhost:3000", "127.0.0.1:8000", ())  # another server
    assert not origin_allowed("null", "127.0.0.1:8000", ())
    assert not origin_allowed("http://a:99999", "a:80", ())  # no crash on a bad port
    assert not origin_allowed("http://a", "a:xyz", ())
    assert origin_allowed("http://anything", "h", ("*",))


async def test_a_keyless_server_answers_loopback_host_names_only() -> None:
    """Against DNS rebinding: a page at evil.example resolved to 127.0.0.1 sends
    `Host: evil.example`, which a server without keys refuses."""
    async with guarded() as (address, _):
        host, port = address.split(":")
        for name, status in ((f"evil.example:{port}", b"403"), (f"localhost:{port}", b"101")):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"GET /v1/realtime HTTP/1.1\r\nHost: " + name.encode() + b"\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            answer = await asyncio.wait_for(reader.read(100), EVENT_TIMEOUT_S)
            assert answer.startswith(b"HTTP/1.1 " + status), (name, answer)
            writer.close()
        await new_session_turn(address)


async def test_a_keyless_server_mints_only_for_loopback_clients() -> None:
    """The client address as a TLS proxy on this host reports it (X-Forwarded-For, trusted
    from 127.0.0.1 as uvicorn does by default)."""
    async with guarded() as (address, app), httpx.AsyncClient() as http:
        endpoint = f"http://{address}/v1/realtime/client_secrets"
        remote = await http.post(endpoint, json={}, headers={"X-Forwarded-For": "203.0.113.7"})
        assert remote.status_code == 403 and remote.json()["error"]["code"] == "not_loopback"
        assert (await http.post(endpoint, json={})).status_code == 200
        await new_session_turn(address)


async def test_client_secrets_outstanding_per_key_are_capped() -> None:
    other = "sk-another-key"
    settings = Settings(api_keys=(KEY, other), max_client_secrets_per_key=3)
    async with guarded(settings) as (address, _), httpx.AsyncClient() as http:
        endpoint = f"http://{address}/v1/realtime/client_secrets"
        auth = {"Authorization": f"Bearer {KEY}"}
        codes = [(await http.post(endpoint, json={}, headers=auth)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        second = await http.post(endpoint, json={}, headers={"Authorization": f"Bearer {other}"})
        assert second.status_code == 200
        await new_session_turn(address, additional_headers={"Authorization": f"Bearer {KEY}"})


# --- control overtakes data, interruption flushes ------------------------------------------------


def _delta(response_id: str, n: int) -> dict[str, Any]:
    return {"type": "response.output_audio.delta", "response_id": response_id, "delta": "A" * n}


async def _drain(outbox: Outbox) -> list[str]:
    kinds = []
    while outbox.bytes:
        item = await outbox.get()
        assert isinstance(item, Queued)
        outbox.written()
        kinds.append(f"{item.type}:{item.response_id}")
    return kinds


async def test_outbox_urgent_events_overtake_queued_deltas_only() -> None:
    outbox = Outbox(high_water_bytes=10_000)
    outbox.push({"type": "response.created", "response": {"id": "r1"}})
    outbox.push(_delta("r1", 100))
    outbox.push(_delta("r1", 100))
    outbox.push({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0})
    outbox.push({"type": "response.done", "response_id": None, "response": {"id": "r1"}})
    outbox.push(_delta("r2", 100))
    outbox.push({"type": "error", "error": {"code": "invalid_json"}})
    assert await _drain(outbox) == [
        "response.created:None",  # not a delta: nothing overtakes it
        "input_audio_buffer.speech_started:None",  # ahead of r1's queued audio
        "response.output_audio.delta:r1",
        "response.output_audio.delta:r1",
        "response.done:None",  # a done stays behind its own deltas
        "error:None",  # ahead of r2's audio, not of r1's done
        "response.output_audio.delta:r2",
    ]


async def test_outbox_purge_drops_the_cancelled_responses_deltas() -> None:
    outbox = Outbox(high_water_bytes=1_000)
    for _ in range(5):
        outbox.push(_delta("r1", 300))
        outbox.push(_delta("r2", 10))
    outbox.push({"type": "response.output_audio.done", "response_id": "r1"})
    assert outbox.bytes > 1_000
    writable = asyncio.create_task(outbox.wait_writable())
    await asyncio.sleep(0)
    assert not writable.done()  # over the high-water mark: the responder waits
    dropped = outbox.purge("r1")
    assert dropped > 1_500 and outbox.bytes < 500
    await asyncio.wait_for(writable, 1)  # below the low-water mark again
    kinds = await _drain(outbox)
    assert kinds == ["response.output_audio.delta:r2"] * 5 + ["response.output_audio.done:r1"]


class RawClient:
    """A WebSocket client over a socket with a small receive buffer, driven by hand
    (websockets' sans-I/O `ClientProtocol`): it reads only when asked to, so that the server's
    queue fills while it does not."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol: ClientProtocol | None = None
        self._texts: list[str] = []

    @classmethod
    async def open(cls, address: str, receive_buffer: int = 4096) -> RawClient:
        host, port = address.split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        client = cls(*await asyncio.open_connection(sock=sock))
        client.protocol = ClientProtocol(parse_uri(ws_url(address)))
        client.protocol.send_request(client.protocol.connect())
        client._flush()
        return client

    async def send(self, text: str) -> None:
        assert self.protocol is not None
        self.protocol.send_text(text.encode())
        self._flush()
        await self.writer.drain()

    async def recv(self) -> str:
        assert self.protocol is not None
        while not self._texts:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed")
            self.protocol.receive_data(data)
            for received in self.protocol.events_received():
                if isinstance(received, Frame) and received.opcode == Opcode.TEXT:
                    self._texts.append(bytes(received.data).decode())
            self._flush()  # pongs
        return self._texts.pop(0)

    def close(self) -> None:
        self.writer.close()

    def _flush(self) -> None:
        assert self.protocol is not None
        self.writer.write(b"".join(self.protocol.data_to_send()))


# About 3 minutes of speech (11 MB of base64 audio): more than the socket buffers hold.
LONG_REPLY = " ".join(["Seven times six is forty two, and that is the answer."] * 60)


async def test_a_cancel_flushes_the_queued_audio_of_a_slow_reader() -> None:
    """A client that has not read for a while cancels: the reply's audio still queued is
    dropped, not sent, and its response.done comes next; the session goes on."""
    settings = Settings(send_queue_bytes=64 * 1024)
    responder = FixedReplyResponder(reply=LONG_REPLY)
    async with guarded(settings, responder) as (address, _):
        client = await RawClient.open(address)
        await recv_until(client, "session.created")
        await client.send(event(type="response.create"))
        await recv_until(client, "response.output_audio.delta")  # the whole reply is spoken now
        await asyncio.sleep(2.0)  # not reading: the socket buffers and the queue fill up
        await client.send(event(type="response.cancel"))
        events = await recv_until(client, "response.done")
        assert events[-1]["response"]["status"] == "cancelled"
        samples = await metrics_of(address)
        assert samples[("realtime_flushed_bytes_total", ())] > 0
        await spoken_turn(client)  # type: ignore[arg-type]
        client.close()
