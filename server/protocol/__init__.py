"""The OpenAI Realtime protocol, free of I/O: event models, configuration, the session machine."""

from server.protocol.config import SessionConfig
from server.protocol.errors import ErrorCode, ProtocolError
from server.protocol.session import (
    Action,
    CancelResponse,
    Close,
    ConfirmResponse,
    Limits,
    Output,
    Session,
    StartResponse,
)

__all__ = [
    "Action",
    "CancelResponse",
    "Close",
    "ConfirmResponse",
    "ErrorCode",
    "Limits",
    "Output",
    "ProtocolError",
    "Session",
    "SessionConfig",
    "StartResponse",
]
