"""Typed server events.

Every event the server sends becomes a frozen dataclass; the GA names and their beta aliases
(`response.audio.delta` for `response.output_audio.delta`, ...) map onto the same class, and
`type` keeps the name that came over the wire. GPT-Live's events map onto the same classes where
they mean the same (`session.output_audio.delta` is an `AudioDelta`, without response or item
ids): one consumer serves both dialects. Events this module does not know become `ServerEvent`
with the raw JSON in `raw`, so nothing is ever dropped.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True)
class ServerEvent:
    type: str
    event_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    received_at: float = field(default=0.0, repr=False, compare=False)  # time.monotonic()

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The constructor arguments beyond `type`, `event_id` and `raw`."""
        return {}


@dataclass(frozen=True, kw_only=True)
class SessionEvent(ServerEvent):
    """`session.created` or `session.updated`."""

    session: dict[str, Any]

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"session": data.get("session") or {}}


@dataclass(frozen=True, kw_only=True)
class SpeechStarted(ServerEvent):
    audio_start_ms: int
    item_id: str

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"audio_start_ms": data.get("audio_start_ms", 0), "item_id": data.get("item_id", "")}


@dataclass(frozen=True, kw_only=True)
class SpeechStopped(ServerEvent):
    audio_end_ms: int
    item_id: str

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"audio_end_ms": data.get("audio_end_ms", 0), "item_id": data.get("item_id", "")}


@dataclass(frozen=True, kw_only=True)
class InputCommitted(ServerEvent):
    item_id: str

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": data.get("item_id", "")}


@dataclass(frozen=True, kw_only=True)
class ResponseCreated(ServerEvent):
    response_id: str

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"response_id": (data.get("response") or {}).get("id", "")}


@dataclass(frozen=True, kw_only=True)
class ResponseDone(ServerEvent):
    response_id: str
    status: str  # completed, cancelled, incomplete, failed
    status_details: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    # per-stage server timings (encode, prefill, first_reasoning_token, ...) when the server
    # sends them as the extension field `response.stage_seconds`
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        response = data.get("response") or {}
        return {
            "response_id": response.get("id", ""),
            "status": response.get("status", ""),
            "status_details": response.get("status_details"),
            "usage": response.get("usage"),
            "stage_seconds": dict(response.get("stage_seconds") or {}),
        }


@dataclass(frozen=True, kw_only=True)
class ResponsePartEvent(ServerEvent):
    """An event about one content part of a response: it names the response and item."""

    response_id: str
    item_id: str

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"response_id": data.get("response_id", ""), "item_id": data.get("item_id", "")}


@dataclass(frozen=True, kw_only=True)
class AudioDelta(ResponsePartEvent):
    """`response.output_audio.delta`: `audio` holds the decoded bytes (PCM16 LE by default)."""

    audio: bytes = b""

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**super().fields_from(data), "audio": base64.b64decode(data.get("delta", ""))}

    def pcm16(self) -> np.ndarray:
        return np.frombuffer(self.audio, dtype="<i2")


@dataclass(frozen=True, kw_only=True)
class AudioDone(ResponsePartEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class TextDelta(ResponsePartEvent):
    """A piece of text: the answer's transcript, text output, or reasoning (by class)."""

    delta: str = ""

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**super().fields_from(data), "delta": data.get("delta", "")}


@dataclass(frozen=True, kw_only=True)
class TextDone(ResponsePartEvent):
    text: str = ""

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        text = data.get("transcript", data.get("text", ""))
        return {**super().fields_from(data), "text": text or ""}


class TranscriptDelta(TextDelta):
    """`response.output_audio_transcript.delta`: the spoken answer as text."""


class TranscriptDone(TextDone):
    pass


class OutputTextDelta(TextDelta):
    """`response.output_text.delta`: a text-only answer."""


class OutputTextDone(TextDone):
    pass


class ReasoningDelta(TextDelta):
    """`response.reasoning_text.delta`: the model's reasoning, shown and never spoken."""


class ReasoningDone(TextDone):
    pass


@dataclass(frozen=True, kw_only=True)
class InputTranscriptDelta(ServerEvent):
    """The user's words as the server heard them (GPT-Live sends them unasked; Realtime when
    the session asks for input transcription). GPT-Live's name no item."""

    delta: str
    item_id: str = ""

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"delta": data.get("delta", ""), "item_id": data.get("item_id", "")}


@dataclass(frozen=True, kw_only=True)
class UsageUpdated(ServerEvent):
    """GPT-Live's `session.usage.updated`, sent after each reply: how a Live client learns that
    a reply has ended (GPT-Live has no response events, and does not say how it ended)."""

    usage: dict[str, Any]

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"usage": data.get("usage") or {}}


@dataclass(frozen=True, kw_only=True)
class ItemTruncated(ServerEvent):
    item_id: str
    audio_end_ms: int

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": data.get("item_id", ""), "audio_end_ms": data.get("audio_end_ms", 0)}


@dataclass(frozen=True, kw_only=True)
class ItemDeleted(ServerEvent):
    """`conversation.item.deleted`: also what the server sends when the user went on speaking
    right after a turn was closed, and it merged that turn into the next (the early user item
    and the reply begun for it leave the conversation)."""

    item_id: str

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": data.get("item_id", "")}


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(ServerEvent):
    code: str | None
    message: str
    param: str | None = None
    client_event_id: str | None = None  # the client event that caused it

    @classmethod
    def fields_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        error = data.get("error") or {}
        return {
            "code": error.get("code"),
            "message": error.get("message", ""),
            "param": error.get("param"),
            "client_event_id": error.get("event_id") or error.get("client_event_id"),
        }


@dataclass(frozen=True, kw_only=True)
class Reconnected(ServerEvent):
    """Made by the client, not the server: the connection dropped and a new session began.
    The server-side conversation of the old connection is gone."""

    attempts: int = 1


EVENT_TYPES: dict[str, type[ServerEvent]] = {
    "session.created": SessionEvent,
    "session.started": SessionEvent,  # GPT-Live
    "session.updated": SessionEvent,
    "input_audio_buffer.speech_started": SpeechStarted,
    "input_audio_buffer.speech_stopped": SpeechStopped,
    "input_audio_buffer.committed": InputCommitted,
    "response.created": ResponseCreated,
    "response.done": ResponseDone,
    "response.output_audio.delta": AudioDelta,
    "response.audio.delta": AudioDelta,
    "response.output_audio.done": AudioDone,
    "response.audio.done": AudioDone,
    "response.output_audio_transcript.delta": TranscriptDelta,
    "response.audio_transcript.delta": TranscriptDelta,
    "response.output_audio_transcript.done": TranscriptDone,
    "response.audio_transcript.done": TranscriptDone,
    "response.output_text.delta": OutputTextDelta,
    "response.text.delta": OutputTextDelta,
    "response.output_text.done": OutputTextDone,
    "response.text.done": OutputTextDone,
    "response.reasoning_text.delta": ReasoningDelta,
    "response.reasoning_text.done": ReasoningDone,
    "conversation.item.truncated": ItemTruncated,
    "conversation.item.deleted": ItemDeleted,
    "conversation.item.input_audio_transcription.delta": InputTranscriptDelta,
    "error": ErrorEvent,
    # GPT-Live's own names
    "session.output_audio.delta": AudioDelta,
    "session.output_transcript.delta": TranscriptDelta,
    "session.input_transcript.delta": InputTranscriptDelta,
    "session.usage.updated": UsageUpdated,
}
# A reply has ended: Realtime says so with response.done, GPT-Live with its usage update.
REPLY_ENDS = (ResponseDone, UsageUpdated)


def parse_event(data: dict[str, Any], received_at: float = 0.0) -> ServerEvent:
    """One server event (decoded JSON) as its typed dataclass."""
    type_ = str(data.get("type", ""))
    cls = EVENT_TYPES.get(type_, ServerEvent)
    fields = cls.fields_from(data)
    event_id = data.get("event_id")
    return cls(type=type_, event_id=event_id, raw=data, received_at=received_at, **fields)
