"""What the connection (server/connection.py) needs of a session machine, whatever its dialect.

Two machines meet this: `Session` (the OpenAI Realtime protocol, session.py) and `LiveSession`
(GPT-Live, live.py, a translator around a `Session`). Both take client messages, responder
events, verdicts and transcripts, and return their outputs in the order they must be acted
on: server events (JSON-ready dicts), actions, and, from a dialect other than Realtime,
`Rendered` events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from server.protocol.actions import Output
from server.protocol.config import SessionConfig
from server.protocol.errors import ErrorCode
from server.protocol.stats import SessionStats
from streaming.responder import ResponseEvent
from streaming.turns.machine import TurnTaking


@dataclass
class Rendered:
    """A server event rendered in another dialect. `wire` goes to the client (None: nothing
    does); `realtime` is the Realtime event it renders, which the connection's bookkeeping reads
    as it reads the Realtime dialect's own events: the response a delta belongs to (a
    cancelled response's queued deltas are dropped), the first audio (latency), a response's
    end (counts, stage timings, transcripts waiting on it), speech (idleness). Audio deltas and
    `response.done` always have a `wire`: the connection observes them when they are written."""

    wire: dict[str, Any] | None
    realtime: dict[str, Any]


MachineOutput = Output | Rendered


class SessionMachine(Protocol):
    """The session as the connection and its turn work drive it."""

    @property
    def id(self) -> str: ...

    @property
    def config(self) -> SessionConfig: ...

    @property
    def turns(self) -> TurnTaking: ...

    @property
    def stats(self) -> SessionStats: ...

    def start(self) -> Sequence[MachineOutput]: ...

    def receive(self, message: str | bytes, now: float) -> Sequence[MachineOutput]: ...

    def on_response_event(
        self, response_id: str, event: ResponseEvent
    ) -> Sequence[MachineOutput]: ...

    def on_response_failed(
        self, response_id: str, code: ErrorCode = ..., message: str | None = None
    ) -> Sequence[MachineOutput]: ...

    def on_turn_verdict(
        self, request_id: int, probability: float, now: float
    ) -> Sequence[MachineOutput]: ...

    def on_transcript_delta(self, item_id: str, text: str) -> Sequence[MachineOutput]: ...

    def on_transcript_done(
        self, item_id: str, transcript: str, usage: dict[str, Any]
    ) -> Sequence[MachineOutput]: ...

    def on_transcript_failed(self, item_id: str, message: str) -> Sequence[MachineOutput]: ...

    def close(
        self, code: ErrorCode, message: str, ws_code: int = 1000
    ) -> Sequence[MachineOutput]: ...
