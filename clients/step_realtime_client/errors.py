"""The client's errors: each `str()` is a message fit for a user, saying what to fix."""

from __future__ import annotations

import json

from websockets.exceptions import ConnectionClosed, InvalidStatus

from step_realtime_client.events import ErrorEvent

CLOSE_POLICY_VIOLATION = 1008  # RFC 6455; the server's answer to a bad key after the handshake
CLOSE_TRY_AGAIN_LATER = 1013
# The server's error code when it drains for a restart: it refuses new sessions (then close
# 1013) and closes the open ones once quiet (then close 1012); another server will take them.
SERVER_SHUTTING_DOWN = "server_shutting_down"
ERROR_BODY_CHARS = 200  # of a non-JSON error body, quoted in the message


class RealtimeError(Exception):
    """Base of this client's errors; `str()` is a message fit for a user."""


class AuthenticationError(RealtimeError):
    """The server refused the API key or client secret."""


class ServerRefused(RealtimeError):
    """The server refused the session (at capacity, shutting down, or an HTTP error in the
    handshake). `retryable`: the refusal is passing (the server drains for a restart), so
    `connect` tries again with its backoff, as a reconnection does."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ConnectionLost(RealtimeError):
    """The connection dropped. `reconnected` says whether a new session is already open."""

    def __init__(self, message: str, reconnected: bool = False) -> None:
        super().__init__(message)
        self.reconnected = reconnected


class NoSpeechDetected(RealtimeError):
    """The server's turn detection heard no speech in the question's audio."""


class ServerError(RealtimeError):
    """The server answered an event of ours with an `error` event."""

    def __init__(self, event: ErrorEvent) -> None:
        super().__init__(f"{event.code}: {event.message}")
        self.event = event


def handshake_error(error: InvalidStatus) -> RealtimeError:
    status = error.response.status_code
    message = error_message(bytes(error.response.body or b"")) or f"HTTP {status}"
    if status in (401, 403):
        return AuthenticationError(f"the server refused the credentials: {message}")
    return ServerRefused(f"the server refused the connection (HTTP {status}): {message}")


def error_message(body: bytes | None) -> str | None:
    try:
        return str(json.loads(body or b"")["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace")[:ERROR_BODY_CHARS] if body else None


def close_error(closed: ConnectionClosed) -> RealtimeError:
    code = closed.rcvd.code if closed.rcvd else None
    reason = closed.rcvd.reason if closed.rcvd else ""
    if code == CLOSE_POLICY_VIOLATION:
        return AuthenticationError(f"the server refused the credentials: {reason}")
    if code == CLOSE_TRY_AGAIN_LATER:
        return ServerRefused(f"the server is busy, try again later: {reason}")
    return ConnectionLost(f"the server closed the connection ({code}): {reason}")


def error_for(event: ErrorEvent) -> RealtimeError:
    if event.code == "session_limit_reached":
        return ServerRefused(event.message)
    if event.code == SERVER_SHUTTING_DOWN:
        return ServerRefused(event.message, retryable=True)
    if event.code in ("invalid_api_key", "unauthorized"):
        return AuthenticationError(event.message)
    return ServerError(event)
