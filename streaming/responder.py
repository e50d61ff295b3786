"""What the server asks of the model side: given a conversation, stream one spoken reply.

The server's session state machine knows nothing of tensors or synthesis. For each response it
builds a `ResponseRequest` and iterates `Responder.respond(request)`, which yields reasoning
deltas (shown, never spoken), answer text deltas, speech chunks with word timings, and finally
`ResponseFinished`. Cancelling (barge-in, `response.cancel`) is closing that async generator:
its `finally` stops the engine sequences and the speech stream. A tool call the model writes
comes as `ToolCallDelta`s of its arguments and one finished `ToolCalled`, and is never spoken.

`transcribe` writes down what the user said in one audio turn (the served model's ASR task),
as `TranscriptDelta`s; the server runs it beside the reply.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from streaming.tool_calls import ToolCall
from tts.base import AudioChunk

Role = Literal["system", "user", "assistant", "tool"]

REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")


@dataclass
class Turn:
    """One conversation item as the model sees it: text, or 16 kHz mono float32 audio.

    An assistant turn may end in `tool_calls`; a `tool` turn is a function's output (`text`)
    and names the function (`name`)."""

    role: Role
    text: str | None = None
    audio: np.ndarray | None = None
    item_id: str | None = None  # lets the responder reuse this turn's audio encoding
    tool_calls: list[ToolCall] = field(default_factory=list)
    name: str | None = None


@dataclass(frozen=True)
class Truncation:
    """How the oldest turns leave the model's context when it is full (OpenAI's `truncation`):
    `auto` drops just enough, `retention_ratio` drops down to that fraction of the room (so that
    the turns after it reuse the cached prefix longer), `disabled` fails the response instead."""

    type: Literal["auto", "disabled", "retention_ratio"] = "auto"
    retention_ratio: float = 1.0


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
    tools: list[dict[str, Any]] = field(default_factory=list)  # Realtime function tools
    truncation: Truncation = field(default_factory=Truncation)


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
class ToolCallDelta:
    """More of the arguments of the tool call numbered `index` (0, 1, ... in this reply)."""

    index: int
    name: str
    delta: str


@dataclass
class ToolCalled:
    """The tool call numbered `index` is complete; `arguments` is its whole JSON text."""

    index: int
    call: ToolCall


@dataclass
class TranscriptDelta:
    text: str


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


ResponseEvent = (
    ReasoningDelta | AnswerDelta | SpeechChunk | ToolCallDelta | ToolCalled | ResponseFinished
)


class ResponseRefused(ValueError):
    """The request cannot be answered as asked: `code` is a stable error code for the client
    (e.g. the conversation does not fit the model's context and truncation is disabled)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidToolCall(ValueError):
    """The model wrote a tool call that cannot be parsed or names no declared tool."""


class Responder(abc.ABC):
    @abc.abstractmethod
    def voices(self) -> list[str]: ...

    @abc.abstractmethod
    def respond(self, request: ResponseRequest) -> AsyncIterator[ResponseEvent]:
        """An async generator of the reply's events, ending with `ResponseFinished`."""

    def transcribe(
        self, audio: np.ndarray, item_id: str | None = None
    ) -> AsyncIterator[TranscriptDelta]:
        """What the user said in `audio` (16 kHz float32), as it is written down. By default
        the responder cannot transcribe: iterating raises `NotImplementedError`."""
        raise NotImplementedError(f"{type(self).__name__} does not transcribe")

    async def prepare(self, request: ResponseRequest) -> None:  # noqa: B027 - optional hook
        """The user is still speaking: `request` is the conversation with the turn's audio so
        far (its last turn's `item_id` is the one the committed turn will have). Do now the
        work that the final `respond` will reuse, so that the work left when the turn ends does
        not grow with its length. Called with ever longer audio; by default nothing."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine and speech workers."""
