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
    judge = turn_models.judge  # semantic_vad's model, shared by all sessions
    docs = settings.api_docs  # off unless asked for: the API is the Realtime protocol's
    app = FastAPI(
        title="step-realtime",
        version="0.1.0",
        lifespan=_warming,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    keys = KeyStore(settings.api_keys, max_per_key=settings.max_client_secrets_per_key)
    metrics = Metrics(settings.max_sessions, settings.first_audio_target_seconds)
    refusals = Refusals(metrics)
    drain = Drain(settings.drain_timeout_seconds, metrics)
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
    limits = Limits(
        max_message_bytes=settings.max_message_bytes,
        max_input_buffer_ms=int(settings.max_input_buffer_seconds * 1000),
        config=SessionLimits(semantic_vad_missing=turn_models.semantic_vad_missing),
    )
    app.state.settings = settings
    app.state.keys = keys
    app.state.metrics = metrics
    app.state.refusals = refusals
    app.state.drain = drain
    app.state.responder = responder
    app.state.active_sessions = 0
    app.state.ready = True
    app.state.startup_error = None  # why the warm-up failed
    app.state.stop_on_failure = None  # set by `serve`: stops the server when warm-up fails

    def config_from(session: object) -> SessionConfig:
        """A new session's configuration: the server's defaults, with `session` applied; a
        client secret's session must be valid whole (it is created, not updated)."""
        config = default_config(settings, voices)
        if session is None:
            return config
        if not isinstance(session, dict):
            raise ProtocolError(ErrorCode.INVALID_VALUE, "session must be an object", "session")
        config, errors = apply_update(config, session, voices, limits.config)
        if errors:
            raise errors[0]
        return config

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        full = app.state.active_sessions >= settings.max_sessions
        engine = _engine_status(responder)
        ready = app.state.ready and not full and engine.get("healthy", True) is not False
        ready = ready and not drain.draining
        status = "draining" if drain.draining else "ready" if ready else "not ready"
        body: dict[str, object] = {"status": status, "sessions": app.state.active_sessions}
        if engine:  # capacity for a balancer or an autoscaler (docs/scaling.md)
            body["engine"] = engine
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", response_model=None)
    async def metrics_endpoint(request: Request) -> PlainTextResponse | JSONResponse:
        if keys.required and not settings.open_metrics:
            if not keys.is_api_key(token_from(request.headers)):
                refusals.refuse("invalid_api_key", "/metrics without an API key", _peer(request))
                return _http_error(401, "invalid_api_key", "/metrics needs an API key")
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def admin_refusal(request: Request, what: str) -> JSONResponse | None:
        """An API key where the server has keys; else a loopback client. None: allowed."""
        if keys.required and not keys.is_api_key(token_from(request.headers)):
            refusals.refuse("invalid_api_key", f"{what} without an API key", _peer(request))
            return _http_error(401, "invalid_api_key", f"{what} needs an API key")
        if not keys.required and not is_loopback_host(_peer(request)):
            message = f"a server without API keys takes {what} from loopback clients only"
            refusals.refuse("not_loopback", message, _peer(request))
            return _http_error(403, "not_loopback", message)
        return None

    @app.post("/admin/drain")
    async def admin_drain(request: Request) -> JSONResponse:
        """Drain as on SIGTERM (server/drain.py); under `serve` the process exits once done."""
        refused = admin_refusal(request, "/admin/drain")
        if refused is not None:
            return refused
        drain.start("admin")
        body = {
            "status": "draining",
            "sessions": drain.sessions,
            "timeout_seconds": drain.timeout_seconds,
        }
        return JSONResponse(body, status_code=202)

    @app.post("/v1/realtime/client_secrets")
    async def client_secrets(request: Request) -> JSONResponse:
        token = token_from(request.headers)
        if keys.required and not keys.is_api_key(token):
            refusals.refuse("invalid_api_key", "client_secrets without an API key", _peer(request))
            return _http_error(401, "invalid_api_key", "an API key is required to mint secrets")
        if not keys.required and not is_loopback_host(_peer(request)):
            message = "a server without API keys mints client secrets for loopback clients only"
            refusals.refuse("not_loopback", message, _peer(request))
            return _http_error(403, "not_loopback", message)
        if drain.draining:  # a secret is good on this server only, which takes no new session
            code = str(ErrorCode.SERVER_SHUTTING_DOWN)
            refusals.refuse(code, "client secret refused: draining", _peer(request))
            return _http_error(503, code, REFUSED_MESSAGE)
        raw = await request.body()  # read (and capped) by BodyLimit
        try:
            body = load_json(raw) if raw.strip() else None
        except ProtocolError as error:
            return _http_error(400, str(error.code), error.message, error.param)
        if not isinstance(body, dict):
            body = {}
        expires = body.get("expires_after")
        expires = expires if isinstance(expires, dict) else {}
        ttl = expires.get("seconds", settings.client_secret_ttl_seconds)
        if not isinstance(ttl, int) or not MIN_SECRET_TTL_SECONDS <= ttl <= MAX_SECRET_TTL_SECONDS:
            return _http_error(
                400,
                str(ErrorCode.INVALID_VALUE),
                f"expires_after.seconds must be an integer from {MIN_SECRET_TTL_SECONDS} "
                f"to {MAX_SECRET_TTL_SECONDS}",
                "expires_after.seconds",
            )
        session = body.get("session")
        try:
            config = config_from(session)
        except ProtocolError as error:
            return _http_error(400, str(error.code), error.message, error.param)
        rendered = render_session(new_id("sess"), config, beta=False)
        try:  # minted last: a request that fails above leaves no secret behind
            value, expires_at = keys.mint(ttl, session, owner=token or OPEN_OWNER)
        except TooManySecrets as error:
            refusals.refuse("too_many_client_secrets", str(error), _peer(request))
            return _http_error(429, "too_many_client_secrets", str(error))
        return JSONResponse({"value": value, "expires_at": expires_at, "session": rendered})

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket, model: str | None = None) -> None:
        try:
            await open_session(ws, model)
        except Exception:  # set-up, or a failure outside the session machine's own catch-all
            log.exception("session set-up failed; closing with 1011")
            metrics.connections_closed.labels(str(ErrorCode.SERVER_ERROR)).inc()
            await _fail(ws)

    @app.websocket("/v1/live/sessions")
    async def live(ws: WebSocket) -> None:
        """GPT-Live over a WebSocket: the client starts it with `session.start`."""
        try:
            await open_session(ws, None, live=True)
        except Exception:  # as /v1/realtime's
            log.exception("session set-up failed; closing with 1011")
            metrics.connections_closed.labels(str(ErrorCode.SERVER_ERROR)).inc()
            await _fail(ws)

    async def open_session(ws: WebSocket, model: str | None, live: bool = False) -> None:
        offered = ws.scope.get("subprotocols", [])
        grant = keys.check(token_from(ws.headers, offered))
        if grant is None:
            refusals.refuse("invalid_api_key", "handshake without a valid key", _peer(ws))
            await _deny(ws, "missing or invalid API key or client secret")
            return
        beta = BETA_HEADER_VALUE in ws.headers.get("openai-beta", "") or BETA_SUBPROTOCOL in offered
        await _accept(ws)
        config = config_from(grant.session)
        if model:
            config = dataclasses.replace(config, model=model)
        session: SessionMachine
        if live:
            started_at = time.time()
            session = LiveSession(
                config,
                voices,
                limits=limits,
                speculate_after_ms=settings.speculative_start_ms or None,
                vad=settings.vad,
                started_at=started_at,
                expires_at=int(started_at + settings.max_session_seconds),
            )
        else:
            session = Session(
                config,
                voices,
                beta=beta,
                limits=limits,
                speculate_after_ms=settings.speculative_start_ms or None,
                vad=settings.vad,
            )
        context = {"session_id": session.id}
        if drain.draining:
            code = ErrorCode.SERVER_SHUTTING_DOWN
            refusals.refuse(str(code), "session refused: draining", _peer(ws))
            await _refuse(ws, session, code, REFUSED_MESSAGE, "server shutting down")
            return
        if app.state.active_sessions >= settings.max_sessions:
            metrics.sessions_rejected.inc()
            refusals.log.refused("session_limit_reached", "session refused: at capacity", _peer(ws))
            message = (
                f"the server is at its limit of {settings.max_sessions} sessions; try again later"
            )
            code = ErrorCode.SESSION_LIMIT_REACHED
            await _refuse(ws, session, code, message, "session limit reached")
            return
        app.state.active_sessions += 1
        metrics.sessions.inc()
        metrics.sessions_active.inc()
        log.info("session opened", extra={**context, "client": grant.kind})
        connection: Connection | None = None
        try:
            connection = Connection(
                ws,
                session,
                responder,
                metrics,
                send_queue_bytes=settings.send_queue_bytes,
                send_stall_seconds=settings.send_stall_seconds,
                max_session_seconds=settings.max_session_seconds,
                idle_timeout_seconds=settings.idle_timeout_seconds,
                judge=judge,
                audio_lead_seconds=AUDIO_LEAD_MS / 1000 if live else None,
            )
            drain.add(connection)
            await connection.run()
        finally:
            if connection is not None:
                drain.discard(connection)
            app.state.active_sessions -= 1
            metrics.sessions_active.dec()
            log.info("session closed", extra=context)

    mount_page(  # the browser page at /, its files under /web/ (server/web/README.md)
        app,
        page_config(
            model=settings.model_name,
            voices=voices,
            default_voice=default_config(settings, voices).voice or None,
            efforts=list(REASONING_EFFORTS),
            default_effort=settings.reasoning_effort,
            auth_required=keys.required,
            first_audio_target_seconds=settings.first_audio_target_seconds,
        ),
    )
    return app


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
