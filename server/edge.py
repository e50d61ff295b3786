"""What happens before a request reaches a route or a session (see docs/security.md).

- `GuardedHttpProtocol` (uvicorn's httptools protocol): a connection must send complete request
  headers within `header_timeout_seconds` (raw sockets and slowloris clients are dropped), and
  at most `max_header_bytes` of them (431 beyond).
- `GuardedWebSocketProtocol` (uvicorn's websockets-sansio protocol): a handshake that the
  WebSocket parser refuses (a header line over 8 KB, too many headers) is answered (431 or 400)
  instead of left hanging; a refused handshake is not logged as an error; a close on a socket
  whose peer does not read, and a keepalive ping timeout, abort the socket instead of waiting
  behind unread data for ever.
- `BodyLimit`: an HTTP request body is read in full before the route runs, at most
  `max_bytes` (413) and within `timeout_seconds` (408); a client that disconnects mid-body ends
  the request quietly.
- `OriginCheck`: a browser's `Origin` must be this server's own host or in the allow-list, and
  a server without API keys answers only to loopback host names (against DNS rebinding).
- `server_config`: the uvicorn configuration that `serve` runs, and the hardening tests too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from asyncio import TimerHandle
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import SplitResult, urlsplit

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import SecurityError

from server.logs import RefusalLog, quiet_uvicorn
from server.metrics import Metrics
from server.protocol.errors import error_object
from server.settings import Settings

log = logging.getLogger("server.edge")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A WebSocket message may be this many times `max_message_bytes` after decompression: the
# session answers the first multiple with a clean `message_too_large` error event, and past
# this the socket closes with 1009. The cap is on the inflated size (permessage-deflate), so
# 40 KB of compressed silence cannot become 18 MB.
WS_MAX_SIZE_FACTOR = 2
LOOPBACK_NAMES = frozenset({"localhost"})
ANY_ORIGIN = "*"
METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class Refusals:
    """Counts refused requests (`realtime_requests_refused{reason}`) and logs them through a
    `RefusalLog` (WARNING, rate-limited per reason)."""

    def __init__(self, metrics: Metrics | None = None, refusal_log: RefusalLog | None = None):
        self.metrics = metrics
        self.log = refusal_log or RefusalLog(log)

    def refuse(self, reason: str, message: str, peer: str | None = None) -> None:
        if self.metrics is not None:
            self.metrics.requests_refused.labels(reason).inc()
        self.log.refused(reason, message, peer)


def error_body(code: str, message: str) -> bytes:
    """An OpenAI-style error object."""
    return json.dumps({"error": error_object(code, message)}).encode()


def raw_response(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with a JSON error body, for a transport with no ASGI app."""
    body = error_body(code, message)
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _peer(transport: asyncio.BaseTransport | None) -> str | None:
    address = transport.get_extra_info("peername") if transport is not None else None
    return str(address[0]) if address else None


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a header size limit."""

    header_timeout_seconds = 10.0
    max_header_bytes = 32 * 1024
    refusals = Refusals()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: TimerHandle | None = None
        self._reading_headers = False
        self._header_bytes = 0  # of the request being read: URL and complete headers
        self._unparsed_bytes = 0  # received while its headers are still incomplete
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        was_reading_headers = self._reading_headers
        super().data_received(data)
        if was_reading_headers and self._reading_headers and not self._refused:
            # one endless header line never reaches `on_header`: count the raw bytes too
            self._unparsed_bytes += len(data)
            if self._unparsed_bytes > self.max_header_bytes:
                self._refuse_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:  # the next request on a kept-alive connection
            self._expect_headers()

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._stop_header_timer()
        if self._header_bytes > self.max_header_bytes:
            self._refuse_headers()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        if not self._refused:
            super().handle_websocket_upgrade()

    def _expect_headers(self) -> None:
        self._reading_headers = True
        self._header_bytes = self._unparsed_bytes = 0
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.header_timeout_seconds, self._headers_timed_out
            )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if not self._reading_headers or self.transport.is_closing():
            return
        self.refusals.refuse(
            "handshake_timeout",
            f"no complete request headers within {self.header_timeout_seconds:g} s",
            _peer(self.transport),
        )
        self._refused = True
        self.transport.close()

    def _refuse_headers(self) -> None:
        self._refused = True
        self._stop_header_timer()
        message = f"request headers over {self.max_header_bytes} bytes"
        self.refusals.refuse("request_header_too_large", message, _peer(self.transport))
        self.transport.write(raw_response(431, "request_header_too_large", message))
        self.transport.close()


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol: answers the handshakes its parser refuses, does not
    log refusals as errors, and aborts sockets whose peer does not read."""

    refusals = Refusals()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answered_bad_handshake = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        failed = self.conn.handshake_exc
        if not self.handshake_initiated and failed is not None:
            self._answer_bad_handshake(failed)

    def handle_handshake_exception(self) -> None:
        # uvicorn >= 0.55 answers a refused handshake itself, with a 400 even for a header over
        # websockets' limits (its own 431 comes only with websockets >= 17): answer it here.
        assert self.conn.handshake_exc is not None
        self._answer_bad_handshake(self.conn.handshake_exc)

    def _answer_bad_handshake(self, failed: Exception) -> None:
        if self._answered_bad_handshake:
            return
        self._answered_bad_handshake = True
        over_limit = _security_error(failed)
        too_large = over_limit is not None
        status, code = (431, "request_header_too_large") if too_large else (400, "bad_handshake")
        message = f"WebSocket handshake refused: {over_limit or failed.__cause__ or failed}"
        self.refusals.refuse(code, message, _peer(self.transport))
        self.handshake_complete = self.close_sent = True
        self.transport.write(raw_response(status, code, message))
        self.transport.close()

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if (
            kind == "websocket.close"
            and self.handshake_complete
            and not (self.close_sent or self.disconnected)
            and not self.writable.is_set()
        ):
            # The peer does not read: a close frame would wait behind the unread data.
            self.close_sent = True
            self.transport.abort()
            return
        await super().send(message)
        if kind == "websocket.close" and self.close_timer is not None:
            # A peer that never answers the close is cut off, not waited on with a full buffer.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
        elif kind == "websocket.http.response.body" and not message.get("more_body", False):
            # A refusal answered in full is a finished handshake, not an error to log.
            self.handshake_complete = True

    def keepalive_timeout(self) -> None:
        dropping = not (self.close_sent or self.transport.is_closing())
        super().keepalive_timeout()
        if dropping:
            self.refusals.log.refused(
                "ping_timeout", "dropped a peer that did not answer pings", _peer(self.transport)
            )
        # A peer that does not answer pings does not read a close frame either.
        self.transport.abort()


def _security_error(failed: BaseException) -> SecurityError | None:
    """The `SecurityError` (a request or header line over websockets' 8 KB, too many headers)
    behind a refused handshake, if a limit refused it.

    Where websockets puts it depends on its release: up to 16.x `handshake_exc` is an
    `InvalidMessage` whose `__cause__` is the `SecurityError`; from 17.0 `handshake_exc` is the
    `SecurityError` subclass itself (`RequestLineTooLong`, `HeaderLineTooLong`,
    `TooManyHeaders`), and a limit hit elsewhere in the request still comes as a cause. So the
    whole chain is searched: the exception, then its causes (or contexts).
    """
    seen: set[int] = set()
    exc: BaseException | None = failed
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, SecurityError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


# --- ASGI middleware -------------------------------------------------------------------------


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    body = error_body(code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class BodyLimit:
    """Reads an HTTP request's body up front: at most `max_bytes`, within `timeout_seconds`."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_seconds: float,
        refusals: Refusals | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.refusals = refusals or Refusals()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in METHODS_WITHOUT_BODY:
            await self.app(scope, receive, send)
            return
        peer = _scope_peer(scope)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, 413, "request_too_large", self._too_large(), peer)
            return
        try:
            async with asyncio.timeout(self.timeout_seconds):
                body = await self._read(receive)
        except TimeoutError:
            message = f"the request body did not arrive within {self.timeout_seconds:g} s"
            await self._refuse(send, 408, "request_timeout", message, peer)
            return
        except _BodyTooLarge:
            await self._refuse(send, 413, "request_too_large", self._too_large(), peer)
            return
        except _Disconnected:
            return  # nobody is left to answer
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            part = message.get("body", b"")
            size += len(part)
            if size > self.max_bytes:
                raise _BodyTooLarge
            parts.append(part)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _too_large(self) -> str:
        return f"the request body is over the limit of {self.max_bytes} bytes"

    async def _refuse(
        self, send: Send, status: int, code: str, message: str, peer: str | None
    ) -> None:
        self.refusals.refuse(code, message, peer)
        await send_error(send, status, code, message)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the body read once, then the real one (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _scope_peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def is_loopback_host(host: str | None) -> bool:
    """Whether a client address or host name (without port) is loopback."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(host_header: str) -> str:
    return urlsplit("//" + host_header).hostname or ""


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """A request without `Origin` (not a browser) passes; a browser's must be this server's own
    host (`Host` header) or in `allowed` (`scheme://host[:port]`, or `*` for any)."""
    if origin is None:
        return True
    wanted = {entry.strip().lower().rstrip("/") for entry in allowed}
    given = origin.strip().lower().rstrip("/")
    if ANY_ORIGIN in wanted or given in wanted:
        return True
    try:
        return bool(host) and _same_host(urlsplit(given), urlsplit("//" + (host or "").lower()))
    except ValueError:  # a port that is not a number: not this server
        return False


def _same_host(origin: SplitResult, host: SplitResult) -> bool:
    """Same host and port; the loopback names (localhost, 127.0.0.1, [::1]) are one host."""
    default_port = 443 if origin.scheme == "https" else 80
    if (origin.port or default_port) != (host.port or default_port):
        return False
    if origin.hostname == host.hostname:
        return True
    return is_loopback_host(origin.hostname) and is_loopback_host(host.hostname)


class OriginCheck:
    """Refuses WebSocket handshakes and HTTP requests with a body (403) from browser pages of
    other origins; on a server without keys, also requests for a non-loopback host name."""

    def __init__(
        self,
        app: ASGIApp,
        allowed_origins: Sequence[str],
        loopback_only: bool,
        refusals: Refusals | None = None,
    ) -> None:
        self.app = app
        self.allowed_origins = tuple(allowed_origins)
        self.loopback_only = loopback_only
        self.refusals = refusals or Refusals()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "websocket" or (
            scope["type"] == "http" and scope["method"] not in METHODS_WITHOUT_BODY
        )
        problem = self._problem(scope) if guarded else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        code, message = problem
        self.refusals.refuse(code, message, _scope_peer(scope))
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send_error(_as_denial(send), 403, code, message)
        else:
            await send_error(send, 403, code, message)

    def _problem(self, scope: Scope) -> tuple[str, str] | None:
        host = _header(scope, b"host")
        if self.loopback_only and not is_loopback_host(_hostname(host or "")):
            return (
                "host_not_allowed",
                "this server has no API keys and answers only to loopback host names "
                "(127.0.0.1, localhost, [::1]); configure --api-keys to serve other hosts",
            )
        origin = _header(scope, b"origin")
        if not origin_allowed(origin, host, self.allowed_origins):
            return (
                "origin_not_allowed",
                f"pages from origin {origin!r} may not use this server; add it to "
                "--allowed-origins to allow them",
            )
        return None


def _as_denial(send: Send) -> Send:
    """`send` for a WebSocket handshake refused with an HTTP response (ASGI denial extension)."""

    async def deny(message: Message) -> None:
        kind = message["type"].replace("http.response", "websocket.http.response", 1)
        await send({**message, "type": kind})

    return deny


# --- the uvicorn configuration -----------------------------------------------------------------


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn `Config` for `app` under `settings`: the guarded protocols, keepalive pings,
    the WebSocket message size, our logging. `overrides` go to `uvicorn.Config` (tests pass
    port=0, log_level)."""
    quiet_uvicorn()  # the app logs sessions and refusals itself
    refusals: Refusals = getattr(app.state, "refusals", None) or Refusals()
    http = type(
        "HttpProtocol",
        (GuardedHttpProtocol,),
        {
            "header_timeout_seconds": settings.handshake_timeout_seconds,
            "max_header_bytes": settings.max_header_bytes,
            "refusals": refusals,
        },
    )
    ws = type("WebSocketProtocol", (GuardedWebSocketProtocol,), {"refusals": refusals})
    options: dict[str, Any] = {
        "host": settings.bind_host(),
        "port": settings.port,
        "http": http,
        "ws": ws,
        "log_config": None,  # our JSON logs
        "ws_max_size": settings.max_message_bytes * WS_MAX_SIZE_FACTOR,
        "ws_ping_interval": settings.ws_ping_interval_seconds,
        "ws_ping_timeout": settings.ws_ping_timeout_seconds,
        "server_header": False,
    }
    return uvicorn.Config(app, **{**options, **overrides})
