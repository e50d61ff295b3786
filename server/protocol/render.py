"""Server-side objects (session, item, response) rendered as GA or beta JSON, and beta renaming.

GA names are the default; a client that connected with `OpenAI-Beta: realtime=v1` gets the
beta names and shapes (checked against the `openai` SDK's `types/realtime` and
`types/beta/realtime`).
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from server.protocol.audio import AudioFormat, encode_samples, resample
from server.protocol.config import (
    ResponseOptions,
    SessionConfig,
    Transcription,
    render_beta_format,
    render_format,
)
from server.protocol.items import Item
from streaming.responder import Truncation
from streaming.turns.detection import SemanticVad, TurnDetection

# GA server event type -> beta type; None: the beta protocol has no such event.
BETA_EVENT_NAMES: dict[str, str | None] = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
    "conversation.item.done": None,
}


def content_type(item: Item, beta: bool) -> str:
    if item.role != "assistant":
        return f"input_{item.kind}"
    return item.kind if beta else f"output_{item.kind}"


def render_item(item: Item, beta: bool, audio_format: AudioFormat | None = None) -> dict[str, Any]:
    """The item as JSON; with `audio_format`, audio content carries its audio (retrieve)."""
    if item.type == "function_call":
        return {
            "id": item.id,
            "object": "realtime.item",
            "type": "function_call",
            "status": item.status,
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments or "",
        }
    if item.type == "function_call_output":
        return {
            "id": item.id,
            "object": "realtime.item",
            "type": "function_call_output",
            "status": item.status,
            "call_id": item.call_id,
            "output": item.output or "",
        }
    part: dict[str, Any] = {"type": content_type(item, beta)}
    if item.kind == "text":
        part["text"] = item.text or ""
    else:
        part["transcript"] = item.text
        if audio_format is not None and item.audio is not None:
            pcm = resample(item.audio, item.sample_rate, audio_format.sample_rate)
            part["audio"] = base64.b64encode(encode_samples(audio_format, pcm)).decode()
    return {
        "id": item.id,
        "object": "realtime.item",
        "type": "message",
        "role": item.role,
        "status": item.status,
        "content": [part],
    }


def render_part(item: Item) -> dict[str, Any]:
    """A `response.content_part.*` part: `audio` with transcript, or `text`."""
    if item.kind == "audio":
        return {"type": "audio", "transcript": item.text or ""}
    return {"type": "text", "text": item.text or ""}


def render_turn_detection(detection: TurnDetection | None) -> dict[str, Any] | None:
    if detection is None:
        return None
    return {"type": detection.type, **_public_fields(detection)}


def _public_fields(detection: TurnDetection) -> dict[str, Any]:
    fields = dataclasses.asdict(detection)
    if isinstance(detection, SemanticVad):  # OpenAI's semantic_vad has these (and our merging)
        shown = ("eagerness", "create_response", "interrupt_response", "merge_window_ms")
        return {k: fields[k] for k in shown}
    return fields


def render_transcription(transcription: Transcription | None) -> dict[str, Any] | None:
    if transcription is None:
        return None
    rendered: dict[str, Any] = {"model": transcription.model}
    if transcription.language is not None:
        rendered["language"] = transcription.language
    if transcription.prompt is not None:
        rendered["prompt"] = transcription.prompt
    return rendered


def render_truncation(truncation: Truncation) -> str | dict[str, Any]:
    if truncation.type == "retention_ratio":
        return {"type": "retention_ratio", "retention_ratio": truncation.retention_ratio}
    return truncation.type


def render_session(session_id: str, config: SessionConfig, beta: bool) -> dict[str, Any]:
    """The session as in force. `noise_reduction` is always null: this server does none."""
    turn_detection = render_turn_detection(config.turn_detection)
    transcription = render_transcription(config.transcription)
    reasoning = {"effort": config.reasoning_effort}
    tokens = "inf" if config.max_output_tokens is None else config.max_output_tokens
    tools = [{"type": "function", **tool} for tool in config.tools]
    if beta:
        return {
            "id": session_id,
            "object": "realtime.session",
            "model": config.model,
            "modalities": _beta_modalities(config.output_modalities),
            "instructions": config.instructions,
            "voice": config.voice,
            "input_audio_format": render_beta_format(config.input_format),
            "output_audio_format": render_beta_format(config.output_format),
            "input_audio_transcription": transcription,
            "input_audio_noise_reduction": None,
            "turn_detection": turn_detection,
            "tools": tools,
            "tool_choice": config.tool_choice,
            "temperature": config.temperature,
            "max_response_output_tokens": tokens,
            "speed": config.speed,
            "reasoning": reasoning,
        }
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": config.model,
        "output_modalities": list(config.output_modalities),
        "instructions": config.instructions,
        "audio": {
            "input": {
                "format": render_format(config.input_format),
                "transcription": transcription,
                "noise_reduction": None,
                "turn_detection": turn_detection,
            },
            "output": {
                "format": render_format(config.output_format),
                "voice": config.voice,
                "speed": config.speed,
            },
        },
        "tools": tools,
        "tool_choice": config.tool_choice,
        "max_output_tokens": tokens,
        "include": list(config.include) or None,
        "truncation": render_truncation(config.truncation),
        "reasoning": reasoning,
    }


def _beta_modalities(modalities: tuple[str, ...]) -> list[str]:
    return ["text", "audio"] if "audio" in modalities else ["text"]


def render_response(
    response_id: str,
    options: ResponseOptions,
    beta: bool,
    *,
    status: str = "in_progress",
    status_details: dict[str, Any] | None = None,
    output: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
    stage_seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": status_details,
        "output": output or [],
        "conversation_id": "conv_default",
        "max_output_tokens": (
            "inf" if options.max_output_tokens is None else options.max_output_tokens
        ),
        "metadata": options.metadata,
        "usage": usage,
    }
    if stage_seconds:  # our extension: the server-side split of the response's latency
        body["stage_seconds"] = stage_seconds
    if beta:
        body["modalities"] = _beta_modalities(options.output_modalities)
        body["voice"] = options.voice
        body["output_audio_format"] = render_beta_format(options.output_format)
    else:
        body["output_modalities"] = list(options.output_modalities)
        body["audio"] = {
            "output": {"format": render_format(options.output_format), "voice": options.voice}
        }
    return body


def render_usage(input_tokens: int, reasoning_tokens: int, answer_tokens: int) -> dict[str, Any]:
    """OpenAI's usage object; `reasoning_tokens` (named as in the Responses API) is the part of
    the output that was reasoning, the rest is the answer."""
    output_tokens = reasoning_tokens + answer_tokens
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
        "output_token_details": {
            "text_tokens": output_tokens,
            "audio_tokens": 0,
            "reasoning_tokens": reasoning_tokens,
        },
    }
