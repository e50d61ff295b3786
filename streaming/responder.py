"""What the server asks of the model side: given a conversation, stream one spoken reply.

The server's session state machine knows nothing of tensors or synthesis. For each response it
builds a `ResponseRequest` and iterates `Responder.respond(request)`, which yields reasoning
deltas (shown, never spoken), answer text deltas, speech chunks with word timings, and finally
`ResponseFinished`. Cancelling (barge-in, `response.cancel`) is closing that async generator:
its `finally` stops the engine sequences and the speech stream.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tts.base import AudioChunk

Role = Literal["system", "user", "assistant"]

REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")


@dataclass
class Turn:
    """One conversation item as the model sees it: text, or 16 kHz mono float32 audio."""

    role: Role
    text: str | None = None
    audio: np.ndarray | None = None
    item_id: str | None = None  # lets the responder reuse this turn's audio encoding


@dataclass
class ResponseRequest:
    turns: list[Turn]
    instructions: str | None = None
    speak: bool = True  # False: text-only response (modalities == ["text"])
    voice: str | None = None
    speech_rate: float = 1.0
    max_output_tokens: int | None = None
    temperature: float | None = None
    reasoning_effort: str | None = None  # one of REASONING_EFFORTS; None: the server default


@dataclass
class ReasoningDelta:
    text: str
    tokens: int = 0  # tokens decoded for it (usage of work that may be thrown away)


@dataclass
class AnswerDelta:
    text: str
    tokens: int = 0


@dataclass
class SpeechChunk:
    chunk: AudioChunk


@dataclass
class ResponseFinished:
    status: Literal["completed", "incomplete"] = "completed"
    input_tokens: int = 0
    reasoning_tokens: int = 0
    answer_tokens: int = 0
    # seconds from the start of `respond` to each stage: encode, prefill, first_reasoning_token,
    # first_answer_token, first_tts_chunk
    stage_seconds: dict[str, float] = field(default_factory=dict)
    mode: str | None = None  # the scheduling mode used (streaming.scheduler.MODES)


ResponseEvent = ReasoningDelta | AnswerDelta | SpeechChunk | ResponseFinished


class Responder(abc.ABC):
    @abc.abstractmethod
    def voices(self) -> list[str]: ...

    @abc.abstractmethod
    def respond(self, request: ResponseRequest) -> AsyncIterator[ResponseEvent]:
        """An async generator of the reply's events, ending with `ResponseFinished`."""

    async def prepare(self, request: ResponseRequest) -> None:  # noqa: B027 - optional hook
        """The user is still speaking: `request` is the conversation with the turn's audio so
        far (its last turn's `item_id` is the one the committed turn will have). Do now the
        work that the final `respond` will reuse, so that the work left when the turn ends does
        not grow with its length. Called with ever longer audio; by default nothing."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine and speech workers."""
