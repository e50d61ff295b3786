"""The HTTP and WebSocket surface: `/v1/realtime`, client secrets, metrics, health.

app = create_app(responder, Settings(api_keys=("sk-local",)))
uvicorn.run(app, host=settings.bind_host(), port=settings.port)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from server.auth import MAX_SECRET_TTL_SECONDS, MIN_SECRET_TTL_SECONDS, KeyStore, token_from
from server.connection import Connection
from server.metrics import Metrics
from server.protocol import ErrorCode, Limits, ProtocolError, Session, SessionConfig
from server.protocol.config import apply_update
from server.protocol.items import new_id
from server.protocol.models import SessionIn
from server.protocol.render import render_session
from server.settings import Settings
from server.vad import ServerVad
from streaming.responder import Responder

log = logging.getLogger("server.app")

CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: server overloaded
CLOSE_POLICY_VIOLATION = 1008
BETA_HEADER_VALUE = "realtime=v1"
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
REALTIME_SUBPROTOCOL = "realtime"


def default_config(settings: Settings, voices: list[str]) -> SessionConfig:
    return SessionConfig(
        model=settings.model_name,
        instructions=settings.instructions,
        voice=settings.default_voice or (voices[0] if voices else ""),
        turn_detection=ServerVad(),
        reasoning_effort=settings.reasoning_effort,
    )


def _http_error(status: int, code: str, message: str, param: str | None = None) -> JSONResponse:
    error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
    return JSONResponse({"error": error}, status_code=status)


def create_app(responder: Responder, settings: Settings | None = None) -> FastAPI:
    """The server app around any `Responder`; tests run it with uvicorn on 127.0.0.1:0."""
    settings = settings or Settings()
    app = FastAPI(title="step-realtime", version="0.1.0")
    keys = KeyStore(settings.api_keys)
    metrics = Metrics(settings.max_sessions, settings.first_audio_target_seconds)
    voices = responder.voices()
    limits = Limits(
        max_message_bytes=settings.max_message_bytes,
        max_input_buffer_ms=int(settings.max_input_buffer_seconds * 1000),
    )
    app.state.settings = settings
    app.state.keys = keys
    app.state.metrics = metrics
    app.state.responder = responder
    app.state.active_sessions = 0
    app.state.ready = True

    def config_from(session: dict[str, Any] | None) -> SessionConfig:
        config = default_config(settings, voices)
        if session:
            config = apply_update(config, SessionIn.model_validate(session), voices)
        return config

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        full = app.state.active_sessions >= settings.max_sessions
        ready = app.state.ready and not full
        body = {"status": "ready" if ready else "not ready", "sessions": app.state.active_sessions}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/realtime/client_secrets")
    async def client_secrets(request: Request) -> JSONResponse:
        if keys.required and not keys.is_api_key(token_from(request.headers)):
            return _http_error(401, "invalid_api_key", "an API key is required to mint secrets")
        try:
            body = await request.json()
        except ValueError:
            body = None
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
        except ValidationError as error:
            first = error.errors()[0]
            param = "session." + ".".join(str(p) for p in first["loc"])
            return _http_error(400, str(ErrorCode.INVALID_VALUE), f"{param}: {first['msg']}", param)
        except ProtocolError as error:
            return _http_error(400, str(error.code), error.message, error.param)
        value, expires_at = keys.mint(ttl, session)
        rendered = render_session(new_id("sess"), config, beta=False)
        return JSONResponse({"value": value, "expires_at": expires_at, "session": rendered})

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket, model: str | None = None) -> None:
        offered = ws.scope.get("subprotocols", [])
        grant = keys.check(token_from(ws.headers, offered))
        if grant is None:
            await _deny(ws, "missing or invalid API key or client secret")
            return
        beta = BETA_HEADER_VALUE in ws.headers.get("openai-beta", "") or BETA_SUBPROTOCOL in offered
        await ws.accept(
            subprotocol=REALTIME_SUBPROTOCOL if REALTIME_SUBPROTOCOL in offered else None
        )
        config = config_from(grant.session)
        if model:
            config = dataclasses.replace(config, model=model)
        session = Session(
            config,
            voices,
            beta=beta,
            limits=limits,
            speculate_after_ms=settings.speculative_start_ms or None,
        )
        context = {"session_id": session.id}
        if app.state.active_sessions >= settings.max_sessions:
            metrics.sessions_rejected.inc()
            log.warning("session refused: at capacity", extra=context)
            await _refuse(ws, session, settings.max_sessions)
            return
        app.state.active_sessions += 1
        metrics.sessions.inc()
        metrics.sessions_active.inc()
        log.info("session opened", extra={**context, "client": grant.kind})
        try:
            connection = Connection(
                ws,
                session,
                responder,
                metrics,
                send_queue_events=settings.send_queue_events,
                max_session_seconds=settings.max_session_seconds,
                idle_timeout_seconds=settings.idle_timeout_seconds,
            )
            await connection.run()
        finally:
            app.state.active_sessions -= 1
            metrics.sessions_active.dec()
            log.info("session closed", extra=context)

    return app


async def _deny(ws: WebSocket, message: str) -> None:
    """Refuse the handshake with HTTP 401 where the server supports it, else close 1008."""
    body = {
        "error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": message}
    }
    try:
        await ws.send_denial_response(JSONResponse(body, status_code=401))
    except RuntimeError:
        await ws.close(CLOSE_POLICY_VIOLATION, message)


async def _refuse(ws: WebSocket, session: Session, capacity: int) -> None:
    """At capacity: say so in an error event, then close with 1013 (try again later)."""
    outputs = session.close(
        ErrorCode.SESSION_LIMIT_REACHED,
        f"the server is at its limit of {capacity} sessions; try again later",
        CLOSE_TRY_AGAIN_LATER,
    )
    for output in outputs:
        if isinstance(output, dict):
            await ws.send_text(json.dumps(output))
    await ws.close(CLOSE_TRY_AGAIN_LATER, "session limit reached")


def serve(responder: Responder, settings: Settings) -> None:
    """Run the server in this process until interrupted."""
    settings.check()
    app = create_app(responder, settings)
    uvicorn.run(
        app,
        host=settings.bind_host(),
        port=settings.port,
        log_config=None,  # our JSON logs
        ws_max_size=settings.max_message_bytes * 4,  # larger still gets a clean error event
    )
