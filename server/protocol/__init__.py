"""The OpenAI Realtime protocol, free of I/O: event models, configuration, the session machine
(and GPT-Live's, `LiveSession`, a translator around it)."""

from server.protocol.actions import (
    Action,
    CancelResponse,
    Close,
    ConfirmResponse,
    JudgeTurnEnd,
    Output,
    PrepareResponse,
    StartResponse,
    Transcribe,
    TurnsMerged,
)
from server.protocol.config import SessionConfig
from server.protocol.errors import ErrorCode, ProtocolError
from server.protocol.live import LiveSession
from server.protocol.machine import MachineOutput, Rendered, SessionMachine
from server.protocol.session import Limits, Session

__all__ = [
    "Action",
    "CancelResponse",
    "Close",
    "ConfirmResponse",
    "ErrorCode",
    "JudgeTurnEnd",
    "Limits",
    "LiveSession",
    "MachineOutput",
    "Output",
    "PrepareResponse",
    "ProtocolError",
    "Rendered",
    "Session",
    "SessionConfig",
    "SessionMachine",
    "StartResponse",
    "Transcribe",
    "TurnsMerged",
]
