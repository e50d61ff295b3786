"""The OpenAI Realtime protocol, free of I/O: event models, configuration, the session machine."""

from server.protocol.config import SessionConfig
from server.protocol.errors import ErrorCode, ProtocolError
from server.protocol.session import (
    Action,
    CancelResponse,
    Close,
    ConfirmResponse,
    JudgeTurnEnd,
    Limits,
    Output,
    PrepareResponse,
    Session,
    StartResponse,
    Transcribe,
    TurnsMerged,
)

__all__ = [
    "Action",
    "CancelResponse",
    "Close",
    "ConfirmResponse",
    "ErrorCode",
    "JudgeTurnEnd",
    "Limits",
    "Output",
    "PrepareResponse",
    "ProtocolError",
    "Session",
    "SessionConfig",
    "StartResponse",
    "Transcribe",
    "TurnsMerged",
]
