"""The HTTP and WebSocket surface: `/v1/realtime`, `/v1/live/sessions` (GPT-Live: the same
auth, limits, responder and metrics; docs/live.md), client secrets, metrics, health, draining.

app = create_app(responder, Settings(api_keys=("sk-local",)))
DrainingServer(server_config(app, settings), app.state.drain).run()  # or `serve`

SIGTERM and `POST /admin/drain` drain the server for a rolling upgrade (server/drain.py).

Start-up (server/startup.py): what every session needs is loaded or checked before the first
session, turn detection's models in `create_app`, the responder's engine and voice by its
`warm_up` once the server listens (`/readyz` answers 503 until then). A part that is missing
stops `serve` with one `StartupError`. A session whose set-up fails all the same gets the
`server_error` event and close 1011, never an unhandled exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.websockets import WebSocketState

from server.auth import (
    MAX_SECRET_TTL_SECONDS,
    MIN_SECRET_TTL_SECONDS,
    OPEN_OWNER,
    KeyStore,
    TooManySecrets,
    token_from,
)
from server.connection import CLOSE_INTERNAL_ERROR, Connection
from server.drain import (
    CLOSE_TRY_AGAIN_LATER,
    REFUSED_MESSAGE,
    Drain,
    DrainingServer,
)
from server.edge import BodyLimit, OriginCheck, Refusals, is_loopback_host, server_config
from server.metrics import Metrics
from server.protocol import (
    ErrorCode,
    Limits,
    LiveSession,
    ProtocolError,
    Rendered,
    Session,
    SessionConfig,
    SessionMachine,
)
from server.protocol.config import SessionLimits, apply_update
from server.protocol.errors import error_event, error_object
from server.protocol.items import new_id
from server.protocol.live import AUDIO_LEAD_MS
from server.protocol.parse import load_json
from server.protocol.render import render_session
from server.settings import Settings
from server.startup import StartupError, TurnModels, check_default_voice, load_turn_models
from server.web import mount_page, page_config
from streaming.responder import REASONING_EFFORTS, Responder

log = logging.getLogger("server.app")

CLOSE_POLICY_VIOLATION = 1008
BETA_HEADER_VALUE = "realtime=v1"
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
REALTIME_SUBPROTOCOL = "realtime"
SETUP_FAILED_MESSAGE = (
    "the session could not be set up inside the server; the failure is logged. Try again, "
    "or ask the server's operator"
)


def default_config(settings: Settings, voices: list[str]) -> SessionConfig:
    return SessionConfig(
        model=settings.model_name,
        instructions=settings.instructions,
        voice=settings.default_voice or (voices[0] if voices else ""),
        turn_detection=settings.default_turn_detection(),
        reasoning_effort=settings.reasoning_effort,
    )


def _http_error(status: int, code: str, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": error_object(code, message, param=param)}, status_code=status)


@contextlib.asynccontextmanager
async def _warming(app: FastAPI) -> AsyncIterator[None]:
    """While the server runs: warm the responder's engine up in the background (a vLLM start
    takes from seconds to minutes); `/readyz` answers 503 until that is done. At shutdown the
    responder is closed, so that an engine's own processes (vLLM's) end with the server."""
    responder: Responder = app.state.responder
    warm_up = getattr(responder, "warm_up", None)
    task = None
    if warm_up is not None:
        app.state.ready = False
        task = asyncio.create_task(_warm_up(app, warm_up))
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await responder.close()


async def _warm_up(app: FastAPI, warm_up: Callable[[], Awaitable[None]]) -> None:
    try:
        await warm_up()
    except Exception as error:  # readyz stays 503; under `serve` the process exits 1
        log.exception("warm-up failed, /readyz stays 503: %s", error)
        app.state.startup_error = f"warm-up failed: {type(error).__name__}: {error}"
        stop = app.state.stop_on_failure
        if stop is not None:
            stop()
        return
    app.state.ready = True
    log.info("engine warmed up: ready")


def _engine_status(responder: Responder) -> dict[str, object]:
    status = getattr(responder, "engine_status", None)
    return dict(status()) if status is not None else {}


def create_app(
    responder: Responder,
    settings: Settings | None = None,
    *,
    turn_models: TurnModels | None = None,
) -> FastAPI:
    """The server app around any `Responder`; tests run it with uvicorn on 127.0.0.1:0.

    Raises StartupError where a part every session needs is missing (server/startup.py);
    `turn_models`: already loaded by `load_turn_models(settings)` (default: loaded here)."""
    settings = settings or Settings()
    voices = responder.voices()
    check_default_voice(settings, voices)
    turn_models = turn_models or load_turn_models(settings)
    app = _new_app(api_docs=settings.api_docs)
    routes = Routes(app, responder, settings, voices, turn_models)
    _add_edge_checks(app, settings, routes.keys, routes.refusals)
    routes.add_to(app)
    # the browser page at /, its files under /web/ (server/web/README.md)
    mount_page(app, _page_settings(settings, voices, routes.keys))
    return app


def _new_app(api_docs: bool) -> FastAPI:
    """The bare app; its docs are off unless asked for: the API is the Realtime protocol's."""
    return FastAPI(
        title="step-realtime",
        version="0.1.0",
        lifespan=_warming,
        docs_url="/docs" if api_docs else None,
        redoc_url="/redoc" if api_docs else None,
        openapi_url="/openapi.json" if api_docs else None,
    )


def _add_edge_checks(app: FastAPI, settings: Settings, keys: KeyStore, refusals: Refusals) -> None:
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_http_body_bytes,
        timeout_seconds=settings.http_body_timeout_seconds,
        refusals=refusals,
    )
    app.add_middleware(  # outermost: a refused origin's body is never read
        OriginCheck,
        allowed_origins=settings.allowed_origins,
        loopback_only=not keys.required and not settings.allow_remote_without_auth,
        refusals=refusals,
    )


def _page_settings(settings: Settings, voices: list[str], keys: KeyStore) -> dict[str, Any]:
    return page_config(
        model=settings.model_name,
        voices=voices,
        default_voice=default_config(settings, voices).voice or None,
        efforts=list(REASONING_EFFORTS),
        default_effort=settings.reasoning_effort,
        auth_required=keys.required,
        first_audio_target_seconds=settings.first_audio_target_seconds,
    )


class Routes:
    """The app's routes, one method each, over the parts all requests share. Those parts are
    on `app.state` too, where `serve`, the warm-up and tests reach them; the session count
    and readiness live only there."""

    def __init__(
        self,
        app: FastAPI,
        responder: Responder,
        settings: Settings,
        voices: list[str],
        turn_models: TurnModels,
    ) -> None:
        self.responder = responder
        self.settings = settings
        self.voices = voices
        self.judge = turn_models.judge  # semantic_vad's model, shared by all sessions
        self.keys = KeyStore(settings.api_keys, max_per_key=settings.max_client_secrets_per_key)
        self.metrics = Metrics(settings.max_sessions, settings.first_audio_target_seconds)
        self.refusals = Refusals(self.metrics)
        self.drain = Drain(settings.drain_timeout_seconds, self.metrics)
        self.limits = Limits(
            max_message_bytes=settings.max_message_bytes,
            max_input_buffer_ms=int(settings.max_input_buffer_seconds * 1000),
            config=SessionLimits(semantic_vad_missing=turn_models.semantic_vad_missing),
        )
        self.state = app.state
        self._publish()

    def _publish(self) -> None:
        state = self.state
        state.settings = self.settings
        state.keys = self.keys
        state.metrics = self.metrics
        state.refusals = self.refusals
        state.drain = self.drain
        state.responder = self.responder
        state.active_sessions = 0
        state.ready = True
        state.startup_error = None  # why the warm-up failed
        state.stop_on_failure = None  # set by `serve`: stops the server when warm-up fails

    def add_to(self, app: FastAPI) -> None:
        app.get("/healthz")(self.healthz)
        app.get("/readyz")(self.readyz)
        app.get("/metrics", response_model=None)(self.metrics_endpoint)
        app.post("/admin/drain")(self.admin_drain)
        app.post("/v1/realtime/client_secrets")(self.client_secrets)
        app.websocket("/v1/realtime")(self.realtime)
        app.websocket("/v1/live/sessions")(self.live)

    # --- HTTP -----------------------------------------------------------------------------

    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    async def readyz(self) -> JSONResponse:
        sessions = self.state.active_sessions
        full = sessions >= self.settings.max_sessions
        engine = _engine_status(self.responder)
        ready = self.state.ready and not full and engine.get("healthy", True) is not False
        ready = ready and not self.drain.draining
        status = "draining" if self.drain.draining else "ready" if ready else "not ready"
        body: dict[str, object] = {"status": status, "sessions": sessions}
        if engine:  # capacity for a balancer or an autoscaler (docs/scaling.md)
            body["engine"] = engine
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_endpoint(self, request: Request) -> PlainTextResponse | JSONResponse:
        if self.keys.required and not self.settings.open_metrics:
            if not self.keys.is_api_key(token_from(request.headers)):
                self.refusals.refuse(
                    "invalid_api_key", "/metrics without an API key", _peer(request)
                )
                return _http_error(401, "invalid_api_key", "/metrics needs an API key")
        registry = self.metrics.registry
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def admin_drain(self, request: Request) -> JSONResponse:
        """Drain as on SIGTERM (server/drain.py); under `serve` the process exits once done."""
        refused = self._caller_refusal(
            request,
            "/admin/drain",
            needs_key="/admin/drain needs an API key",
            loopback_only="a server without API keys takes /admin/drain from loopback clients only",
        )
        if refused is not None:
            return refused
        self.drain.start("admin")
        body = {
            "status": "draining",
            "sessions": self.drain.sessions,
            "timeout_seconds": self.drain.timeout_seconds,
        }
        return JSONResponse(body, status_code=202)

    async def client_secrets(self, request: Request) -> JSONResponse:
        refused = self._minting_refusal(request)
        if refused is not None:
            return refused
        try:
            ttl, session = self._secret_request(await request.body())  # capped by BodyLimit
            config = self.config_from(session)
        except ProtocolError as error:
            return _http_error(400, str(error.code), error.message, error.param)
        rendered = render_session(new_id("sess"), config, beta=False)
        owner = token_from(request.headers) or OPEN_OWNER
        try:  # minted last: a request that fails above leaves no secret behind
            value, expires_at = self.keys.mint(ttl, session, owner=owner)
        except TooManySecrets as error:
            self.refusals.refuse("too_many_client_secrets", str(error), _peer(request))
            return _http_error(429, "too_many_client_secrets", str(error))
        return JSONResponse({"value": value, "expires_at": expires_at, "session": rendered})

    def _minting_refusal(self, request: Request) -> JSONResponse | None:
        """Who may mint a client secret: as for /admin/drain, and none while draining."""
        refused = self._caller_refusal(
            request,
            "client_secrets",
            needs_key="an API key is required to mint secrets",
            loopback_only=(
                "a server without API keys mints client secrets for loopback clients only"
            ),
        )
        if refused is None and self.drain.draining:
            # a secret is good on this server only, which takes no new session
            code = str(ErrorCode.SERVER_SHUTTING_DOWN)
            self.refusals.refuse(code, "client secret refused: draining", _peer(request))
            return _http_error(503, code, REFUSED_MESSAGE)
        return refused

    def _caller_refusal(
        self, request: Request, what: str, *, needs_key: str, loopback_only: str
    ) -> JSONResponse | None:
        """An API key where the server has keys; else a loopback client. None: allowed."""
        if self.keys.required and not self.keys.is_api_key(token_from(request.headers)):
            self.refusals.refuse("invalid_api_key", f"{what} without an API key", _peer(request))
            return _http_error(401, "invalid_api_key", needs_key)
        if not self.keys.required and not is_loopback_host(_peer(request)):
            self.refusals.refuse("not_loopback", loopback_only, _peer(request))
            return _http_error(403, "not_loopback", loopback_only)
        return None

    def _secret_request(self, raw: bytes) -> tuple[int, Any]:
        """A client secret request's lifetime in seconds, and its session as sent (None:
        the defaults; `config_from` checks it)."""
        body = load_json(raw) if raw.strip() else None
        if not isinstance(body, dict):
            body = {}
        expires = body.get("expires_after")
        expires = expires if isinstance(expires, dict) else {}
        ttl = expires.get("seconds", self.settings.client_secret_ttl_seconds)
        if not isinstance(ttl, int) or not MIN_SECRET_TTL_SECONDS <= ttl <= MAX_SECRET_TTL_SECONDS:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"expires_after.seconds must be an integer from {MIN_SECRET_TTL_SECONDS} "
                f"to {MAX_SECRET_TTL_SECONDS}",
                "expires_after.seconds",
            )
        return ttl, body.get("session")

    def config_from(self, session: object) -> SessionConfig:
        """A new session's configuration: the server's defaults, with `session` applied; a
        client secret's session must be valid whole (it is created, not updated)."""
        config = default_config(self.settings, self.voices)
        if session is None:
            return config
        if not isinstance(session, dict):
            raise ProtocolError(ErrorCode.INVALID_VALUE, "session must be an object", "session")
        config, errors = apply_update(config, session, self.voices, self.limits.config)
        if errors:
            raise errors[0]
        return config

    # --- WebSocket sessions ---------------------------------------------------------------

    async def realtime(self, ws: WebSocket, model: str | None = None) -> None:
        await self._serve_session(ws, model, live=False)

    async def live(self, ws: WebSocket) -> None:
        """GPT-Live over a WebSocket: the client starts it with `session.start`."""
        await self._serve_session(ws, None, live=True)

    async def _serve_session(self, ws: WebSocket, model: str | None, live: bool) -> None:
        try:
            await self._open_session(ws, model, live)
        except Exception:  # set-up, or a failure outside the session machine's own catch-all
            log.exception("session set-up failed; closing with 1011")
            self.metrics.connections_closed.labels(str(ErrorCode.SERVER_ERROR)).inc()
            await _fail(ws)

    async def _open_session(self, ws: WebSocket, model: str | None, live: bool) -> None:
        offered = ws.scope.get("subprotocols", [])
        grant = self.keys.check(token_from(ws.headers, offered))
        if grant is None:
            self.refusals.refuse("invalid_api_key", "handshake without a valid key", _peer(ws))
            await _deny(ws, "missing or invalid API key or client secret")
            return
        beta = BETA_HEADER_VALUE in ws.headers.get("openai-beta", "") or BETA_SUBPROTOCOL in offered
        await _accept(ws)
        config = self.config_from(grant.session)
        if model:
            config = dataclasses.replace(config, model=model)
        session = self._new_session(config, beta=beta, live=live)
        if await self._refused(ws, session):
            return
        await self._run(ws, session, client=grant.kind, live=live)

    def _new_session(self, config: SessionConfig, *, beta: bool, live: bool) -> SessionMachine:
        speculate_after_ms = self.settings.speculative_start_ms or None
        if not live:
            return Session(
                config,
                self.voices,
                beta=beta,
                limits=self.limits,
                speculate_after_ms=speculate_after_ms,
                vad=self.settings.vad,
            )
        started_at = time.time()
        return LiveSession(
            config,
            self.voices,
            limits=self.limits,
            speculate_after_ms=speculate_after_ms,
            vad=self.settings.vad,
            started_at=started_at,
            expires_at=int(started_at + self.settings.max_session_seconds),
        )

    async def _refused(self, ws: WebSocket, session: SessionMachine) -> bool:
        """Refuse `session` while draining or at capacity (the error event, close 1013)."""
        if self.drain.draining:
            code = ErrorCode.SERVER_SHUTTING_DOWN
            self.refusals.refuse(str(code), "session refused: draining", _peer(ws))
            await _refuse(ws, session, code, REFUSED_MESSAGE, "server shutting down")
            return True
        limit = self.settings.max_sessions
        if self.state.active_sessions < limit:
            return False
        self.metrics.sessions_rejected.inc()
        self.refusals.log.refused(
            "session_limit_reached", "session refused: at capacity", _peer(ws)
        )
        message = f"the server is at its limit of {limit} sessions; try again later"
        code = ErrorCode.SESSION_LIMIT_REACHED
        await _refuse(ws, session, code, message, "session limit reached")
        return True

    async def _run(
        self, ws: WebSocket, session: SessionMachine, *, client: str, live: bool
    ) -> None:
        """Run an admitted session to its end, counted in the active sessions meanwhile."""
        context = {"session_id": session.id}
        self.state.active_sessions += 1
        self.metrics.sessions.inc()
        self.metrics.sessions_active.inc()
        log.info("session opened", extra={**context, "client": client})
        connection: Connection | None = None
        try:
            connection = self._connection(ws, session, live)
            self.drain.add(connection)
            await connection.run()
        finally:
            if connection is not None:
                self.drain.discard(connection)
            self.state.active_sessions -= 1
            self.metrics.sessions_active.dec()
            log.info("session closed", extra=context)

    def _connection(self, ws: WebSocket, session: SessionMachine, live: bool) -> Connection:
        settings = self.settings
        return Connection(
            ws,
            session,
            self.responder,
            self.metrics,
            send_queue_bytes=settings.send_queue_bytes,
            send_stall_seconds=settings.send_stall_seconds,
            max_session_seconds=settings.max_session_seconds,
            idle_timeout_seconds=settings.idle_timeout_seconds,
            judge=self.judge,
            audio_lead_seconds=AUDIO_LEAD_MS / 1000 if live else None,
        )


async def _accept(ws: WebSocket) -> None:
    offered = ws.scope.get("subprotocols", [])
    await ws.accept(subprotocol=REALTIME_SUBPROTOCOL if REALTIME_SUBPROTOCOL in offered else None)


async def _fail(ws: WebSocket) -> None:
    """A session failed where the session machine's catch-all does not reach (its set-up):
    the `server_error` event, then close 1011, as the catch-all does (server/connection.py).
    A handshake not yet accepted is accepted for it; a closed socket gets nothing."""
    with contextlib.suppress(Exception):  # the client may be gone already
        if ws.application_state == WebSocketState.CONNECTING:
            await _accept(ws)
        if ws.application_state != WebSocketState.CONNECTED:
            return
        event = error_event(new_id("event"), ErrorCode.SERVER_ERROR, SETUP_FAILED_MESSAGE)
        await ws.send_text(json.dumps(event))
        await ws.close(CLOSE_INTERNAL_ERROR, "internal error")


def _peer(connection: Request | WebSocket) -> str | None:
    """The client's address (behind a trusted proxy: the forwarded one, see docs/security.md)."""
    return connection.client.host if connection.client else None


async def _deny(ws: WebSocket, message: str) -> None:
    """Refuse the handshake with HTTP 401 where the server supports it, else close 1008."""
    try:
        await ws.send_denial_response(_http_error(401, "invalid_api_key", message))
    except RuntimeError:
        await ws.close(CLOSE_POLICY_VIOLATION, message)


async def _refuse(
    ws: WebSocket, session: SessionMachine, code: ErrorCode, message: str, reason: str
) -> None:
    """At capacity or draining: say so in an error event, then close with 1013 (try again
    later: a balancer or the client's retry finds another server)."""
    for output in session.close(code, message, CLOSE_TRY_AGAIN_LATER):
        event = output.wire if isinstance(output, Rendered) else output
        if isinstance(event, dict):
            await ws.send_text(json.dumps(event))
    await ws.close(CLOSE_TRY_AGAIN_LATER, reason)


def serve(
    responder: Responder, settings: Settings, *, turn_models: TurnModels | None = None
) -> None:
    """Run the server in this process until interrupted, or drained (SIGTERM, POST
    /admin/drain: server/drain.py), after which it returns. Raises StartupError where a part
    every session needs is missing, or the responder's warm-up failed (the server stops)."""
    settings.check()
    app = create_app(responder, settings, turn_models=turn_models)
    config = server_config(app, settings)  # guarded protocols: server/edge.py
    server = DrainingServer(config, app.state.drain)

    def stop() -> None:
        server.should_exit = True

    app.state.stop_on_failure = stop
    server.run()
    if app.state.startup_error is not None:
        raise StartupError(app.state.startup_error)
