"""What the session machine asks of the I/O layer: actions, returned among the server events.

The connection (server/connection.py) carries them out: it starts, confirms and cancels the
responder's work, runs transcription and the end-of-turn model off the event loop, closes the
socket and observes the metrics that only the session can name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.responder import ResponseRequest


@dataclass
class StartResponse:
    response_id: str
    request: ResponseRequest
    mode: str  # the metrics label: the reasoning effort
    speech_end_at: float | None  # arrival of the last audio frame VAD classed as speech
    committed_at: float | None  # when the turn was committed (or response.create arrived)
    speculative: bool = False  # events held back until `ConfirmResponse`, or discarded
    detector: str = "client"  # what closed the turn: server_vad, semantic_vad, idle, client


@dataclass
class ConfirmResponse:
    """A speculative response became real: its turn committed at `committed_at`."""

    response_id: str
    speech_end_at: float | None
    committed_at: float
    detector: str = "server_vad"


@dataclass
class PrepareResponse:
    """The turn in progress grew by another `PREPARE_EVERY_MS`: the responder may work ahead on
    `request` (the conversation with the audio so far). Nothing goes to the client."""

    request: ResponseRequest


@dataclass
class CancelResponse:
    response_id: str
    # "turn_detected" (barge-in), "turn_merged" (the user went on: `TurnsMerged`),
    # "client_cancelled", "speculation_discarded"
    reason: str


@dataclass
class Transcribe:
    """Write down user audio item `item_id` (16 kHz float32 `audio`) and report it through
    `on_transcript_delta` / `on_transcript_done` / `on_transcript_failed`. Where
    `after_response_id` is set, that response's first audio should go out first."""

    item_id: str
    audio: np.ndarray
    after_response_id: str | None = None


@dataclass
class JudgeTurnEnd:
    """Ask the end-of-turn model whether `audio` (the turn so far, 16 kHz int16) is a complete
    utterance, off the event loop, and answer with `on_turn_verdict(request_id, probability)`."""

    request_id: int
    audio: np.ndarray


@dataclass
class Close:
    code: int  # WebSocket close code
    reason: str


@dataclass
class TurnsMerged:
    """Speech came back right after a detector closed a turn: the two are one turn, and the
    reply to the first was withdrawn after `heard_ms` of its audio could have played (for the
    metrics; the events that tell the client come with it)."""

    detector: str
    heard_ms: float


Action = (
    StartResponse
    | ConfirmResponse
    | CancelResponse
    | PrepareResponse
    | Transcribe
    | JudgeTurnEnd
    | Close
    | TurnsMerged
)
Output = dict[str, Any] | Action
