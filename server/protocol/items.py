"""Conversation items: what the session keeps, built from client items, turned into model turns,
and truncated to what the listener heard."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from server.audio import (
    MODEL_SAMPLE_RATE,
    TTS_SAMPLE_RATE,
    AudioFormat,
    decode_bytes,
    resample,
    to_model_audio,
)
from server.protocol import models as m
from server.protocol.errors import ErrorCode, ProtocolError
from server.protocol.parse import b64decode
from streaming.responder import Role, Turn
from tts.base import WordTiming

ItemStatus = Literal["completed", "in_progress", "incomplete"]

# content types a client may give each role (GA names and beta aliases)
ALLOWED_CONTENT = {
    "user": {"input_text", "input_audio"},
    "system": {"input_text"},
    "assistant": {"text", "output_text", "audio", "output_audio"},
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass
class Item:
    """A conversation item. Audio is int16 mono at `sample_rate` (user: 16 kHz, assistant: 24)."""

    id: str
    role: Role
    kind: Literal["text", "audio"]
    text: str | None = None  # the text, or the audio's transcript (None: unknown)
    audio: np.ndarray | None = None
    sample_rate: int = MODEL_SAMPLE_RATE
    status: ItemStatus = "completed"
    words: list[WordTiming] = field(default_factory=list)  # assistant speech: what was said when

    @property
    def audio_ms(self) -> int:
        return 0 if self.audio is None else len(self.audio) * 1000 // self.sample_rate


def item_from_client(item: m.ItemIn, input_format: AudioFormat, taken: Iterable[str]) -> Item:
    """The item a `conversation.item.create` asks for; user audio is in the session's format."""
    if item.type != "message":
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FEATURE,
            f"item type {item.type!r} is not supported; only 'message'",
            "item.type",
        )
    if item.role is None:
        raise ProtocolError(
            ErrorCode.MISSING_REQUIRED_PARAMETER, "item.role is required", "item.role"
        )
    if len(item.content) != 1:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FEATURE,
            f"an item must have exactly one content part, got {len(item.content)}",
            "item.content",
        )
    if item.id is not None and item.id in set(taken):
        raise ProtocolError(
            ErrorCode.ITEM_ID_EXISTS, f"an item with id {item.id} already exists", "item.id"
        )
    part = item.content[0]
    allowed = ALLOWED_CONTENT[item.role]
    if part.type not in allowed:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"content type {part.type!r} is not valid for role {item.role!r}; "
            f"use one of {sorted(allowed)}",
            "item.content[0].type",
        )
    item_id = item.id or new_id("item")
    if part.type == "input_audio":
        audio = _decode_audio(part, input_format)
        return Item(item_id, "user", "audio", part.transcript, audio)
    if part.type in ("audio", "output_audio"):  # history: what the assistant said, no audio
        silence = np.zeros(0, np.int16)
        return Item(item_id, "assistant", "audio", part.transcript or "", silence, TTS_SAMPLE_RATE)
    if part.text is None:
        raise ProtocolError(
            ErrorCode.MISSING_REQUIRED_PARAMETER,
            f"content of type {part.type!r} needs 'text'",
            "item.content[0].text",
        )
    return Item(item_id, item.role, "text", part.text)


def _decode_audio(part: m.ContentIn, fmt: AudioFormat) -> np.ndarray:
    if part.audio is None:
        raise ProtocolError(
            ErrorCode.MISSING_REQUIRED_PARAMETER,
            "content of type 'input_audio' needs 'audio' (base64)",
            "item.content[0].audio",
        )
    raw = b64decode(part.audio, "item.content[0].audio")
    if len(raw) % fmt.bytes_per_sample:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            "audio has an odd number of bytes; PCM16 needs 2 bytes per sample",
            "item.content[0].audio",
        )
    return resample(decode_bytes(fmt, raw), fmt.sample_rate, MODEL_SAMPLE_RATE)


def turn_of(item: Item) -> Turn:
    """The item as the model reads it: user audio as 16 kHz float32, everything else as text."""
    if item.role == "user" and item.kind == "audio" and item.audio is not None:
        return Turn("user", audio=to_model_audio(item.audio), item_id=item.id)
    return Turn(item.role, text=item.text or "", item_id=item.id)


def truncate(item: Item, end_ms: int) -> None:
    """Cut an assistant audio item at `end_ms`: its audio, and its transcript to the words
    played (a word counts as played when its midpoint was)."""
    played = [w for w in item.words if (w.start_ms + w.end_ms) / 2 <= end_ms]
    if item.words:
        item.text = (item.text or "")[: played[-1].end_char] if played else ""
    item.words = played
    if item.audio is not None:
        item.audio = item.audio[: end_ms * item.sample_rate // 1000]
    item.status = "incomplete"
