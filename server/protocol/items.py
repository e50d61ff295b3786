"""Conversation items: what the session keeps, built from client items, turned into model turns,
and truncated to what the listener heard.

Three item types, as OpenAI has them: `message` (text or audio, any role), `function_call` (the
model's call of a tool: `call_id`, `name`, `arguments`) and `function_call_output` (the client's
result for a `call_id`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from server.protocol import models as m
from server.protocol.audio import (
    MODEL_SAMPLE_RATE,
    TTS_SAMPLE_RATE,
    AudioFormat,
    decode_bytes,
    resample,
    to_model_audio,
)
from server.protocol.errors import ErrorCode, ProtocolError
from server.protocol.parse import b64decode
from streaming.responder import Role, Turn
from streaming.tool_calls import ToolCall
from tts.base import WordTiming

ItemStatus = Literal["completed", "in_progress", "incomplete"]
ItemType = Literal["message", "function_call", "function_call_output"]

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
    type: ItemType = "message"
    call_id: str | None = None  # function_call and function_call_output
    name: str | None = None  # function_call
    arguments: str | None = None  # function_call
    output: str | None = None  # function_call_output

    @property
    def audio_ms(self) -> int:
        return 0 if self.audio is None else len(self.audio) * 1000 // self.sample_rate


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: ItemStatus = "completed"
) -> Item:
    return Item(
        item_id,
        "assistant",
        "text",
        status=status,
        type="function_call",
        call_id=call_id,
        name=name,
        arguments=arguments,
    )


def item_from_client(item: m.ItemIn, input_format: AudioFormat, items: Sequence[Item]) -> Item:
    """The item a `conversation.item.create` asks for; user audio is in the session's format."""
    if item.id is not None and any(existing.id == item.id for existing in items):
        raise ProtocolError(
            ErrorCode.ITEM_CREATE_DUPLICATE_ITEM_ID,
            f"an item with id {item.id} already exists",
            "item.id",
        )
    item_id = item.id or new_id("item")
    if item.type == "function_call":
        return _function_call(item, item_id)
    if item.type == "function_call_output":
        return _function_call_output(item, item_id, items)
    return _message(item, item_id, input_format)


def _required(value: str | None, param: str, what: str) -> str:
    if value is None:
        raise ProtocolError(
            ErrorCode.MISSING_REQUIRED_PARAMETER, f"a {what} item needs {param}", f"item.{param}"
        )
    return value


def _function_call(item: m.ItemIn, item_id: str) -> Item:
    call_id = _required(item.call_id, "call_id", "function_call")
    name = _required(item.name, "name", "function_call")
    return function_call_item(item_id, call_id, name, item.arguments or "{}")


def _function_call_output(item: m.ItemIn, item_id: str, items: Sequence[Item]) -> Item:
    call_id = _required(item.call_id, "call_id", "function_call_output")
    output = _required(item.output, "output", "function_call_output")
    call = next((i for i in items if i.type == "function_call" and i.call_id == call_id), None)
    if call is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_CALL_ID,
            f"no function_call with call_id {call_id!r} in the conversation; send the output "
            "of a call the model made (its item's call_id)",
            "item.call_id",
        )
    return Item(
        item_id,
        "tool",
        "text",
        type="function_call_output",
        call_id=call_id,
        name=call.name,
        output=output,
    )


def _message(item: m.ItemIn, item_id: str, input_format: AudioFormat) -> Item:
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
    part = item.content[0]
    allowed = ALLOWED_CONTENT[item.role]
    if part.type not in allowed:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"content type {part.type!r} is not valid for role {item.role!r}; "
            f"use one of {sorted(allowed)}",
            "item.content[0].type",
        )
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


def check_item_size(item: Item, max_chars: int, max_audio_ms: int) -> None:
    """One item may hold at most `max_chars` of text and `max_audio_ms` of audio."""
    chars = max(len(item.text or ""), len(item.output or ""), len(item.arguments or ""))
    if chars > max_chars:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"the item holds {chars} characters, over the limit of {max_chars} per item",
            "item",
        )
    if item.audio_ms > max_audio_ms:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"the item holds {item.audio_ms} ms of audio, over the limit of {max_audio_ms} ms",
            "item.content[0].audio",
        )


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


def model_turns(items: Sequence[Item]) -> list[Turn]:
    """The conversation as the model reads it. User audio is 16 kHz float32 (its transcript is
    for the client, never shown to the model); a function call is an assistant turn's call; an
    output names its function."""
    return [_turn(item) for item in items]


def _turn(item: Item) -> Turn:
    if item.type == "function_call":
        call = ToolCall(item.name or "", item.arguments or "{}")
        return Turn("assistant", text="", item_id=item.id, tool_calls=[call])
    if item.type == "function_call_output":
        return Turn("tool", text=item.output or "", item_id=item.id, name=item.name)
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
