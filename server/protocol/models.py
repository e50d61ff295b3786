"""Client events as pydantic models: GA shapes and the beta aliases, validated on the way in.

Fields that OpenAI defines but this server does not act on (tracing, tool_choice, ...) are
accepted and ignored, so that existing clients work; fields OpenAI does not define are refused
(`unknown_parameter`), so that a typo is reported rather than silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from streaming.responder import REASONING_EFFORTS

Modality = Literal["text", "audio"]
BetaFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]
Effort = Literal["minimal", "low", "medium", "high", "xhigh"]
assert set(Effort.__args__) == set(REASONING_EFFORTS)  # type: ignore[attr-defined]
MaxTokens = int | Literal["inf"] | None
NonNegative = Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- session configuration -----------------------------------------------------------------


class FormatIn(Strict):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
    rate: int | None = None


class TurnDetectionIn(Strict):
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    prefix_padding_ms: NonNegative | None = None
    silence_duration_ms: NonNegative | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: Annotated[int, Field(ge=1)] | None = None
    eagerness: Any = None  # semantic_vad only


class AudioInputIn(Strict):
    format: FormatIn | None = None
    turn_detection: TurnDetectionIn | None = None
    transcription: Any = None
    noise_reduction: Any = None


class AudioOutputIn(Strict):
    format: FormatIn | None = None
    voice: str | None = None
    speed: Annotated[float, Field(ge=0.25, le=1.5)] | None = None


class AudioIn(Strict):
    input: AudioInputIn | None = None
    output: AudioOutputIn | None = None


class ReasoningIn(Strict):
    effort: Effort | None = None


class SessionIn(Strict):
    """`session.update`'s `session`: the GA fields and the beta ones, in one model."""

    # GA
    type: Literal["realtime"] | None = None
    model: str | None = None
    instructions: str | None = None
    output_modalities: list[Modality] | None = None
    audio: AudioIn | None = None
    max_output_tokens: MaxTokens = None
    reasoning: ReasoningIn | None = None
    # beta
    modalities: list[Modality] | None = None
    input_audio_format: BetaFormat | None = None
    output_audio_format: BetaFormat | None = None
    voice: str | None = None
    speed: Annotated[float, Field(ge=0.25, le=1.5)] | None = None
    turn_detection: TurnDetectionIn | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    max_response_output_tokens: MaxTokens = None
    input_audio_transcription: Any = None
    input_audio_noise_reduction: Any = None
    # both; accepted, not acted on
    tools: list[Any] | None = None
    tool_choice: Any = None
    tracing: Any = None
    include: Any = None
    prompt: Any = None
    truncation: Any = None
    parallel_tool_calls: Any = None
    id: Any = None
    object: Any = None
    expires_at: Any = None
    client_secret: Any = None


# --- conversation items --------------------------------------------------------------------

ContentType = Literal[
    "input_text", "input_audio", "text", "audio", "output_text", "output_audio", "item_reference"
]


class ContentIn(Strict):
    type: ContentType
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None
    id: str | None = None


class ItemIn(Strict):
    type: Literal["message", "function_call", "function_call_output"] = "message"
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    role: Literal["user", "assistant", "system"] | None = None
    status: Any = None
    content: list[ContentIn] = Field(default_factory=list)
    call_id: Any = None
    name: Any = None
    arguments: Any = None
    output: Any = None


# --- responses -----------------------------------------------------------------------------


class ResponseAudioOutputIn(Strict):
    format: FormatIn | None = None
    voice: str | None = None


class ResponseAudioIn(Strict):
    output: ResponseAudioOutputIn | None = None


class ResponseIn(Strict):
    """`response.create`'s `response`: per-response overrides, GA and beta names."""

    instructions: str | None = None
    output_modalities: list[Modality] | None = None
    modalities: list[Modality] | None = None
    audio: ResponseAudioIn | None = None
    voice: str | None = None
    output_audio_format: BetaFormat | None = None
    max_output_tokens: MaxTokens = None
    max_response_output_tokens: MaxTokens = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    reasoning: ReasoningIn | None = None
    metadata: dict[str, str] | None = None
    conversation: str | None = None
    input: list[Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    prompt: Any = None
    parallel_tool_calls: Any = None


# --- client events -------------------------------------------------------------------------


class ClientEvent(Strict):
    event_id: str | None = None


class SessionUpdate(ClientEvent):
    type: Literal["session.update"]
    session: SessionIn


class InputAudioBufferAppend(ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str


class InputAudioBufferCommit(ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClear(ClientEvent):
    type: Literal["input_audio_buffer.clear"]


class ConversationItemCreate(ClientEvent):
    type: Literal["conversation.item.create"]
    previous_item_id: str | None = None
    item: ItemIn


class ConversationItemRetrieve(ClientEvent):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class ConversationItemDelete(ClientEvent):
    type: Literal["conversation.item.delete"]
    item_id: str


class ConversationItemTruncate(ClientEvent):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: NonNegative
    audio_end_ms: NonNegative


class ResponseCreate(ClientEvent):
    type: Literal["response.create"]
    response: ResponseIn | None = None


class ResponseCancel(ClientEvent):
    type: Literal["response.cancel"]
    response_id: str | None = None


class OutputAudioBufferClear(ClientEvent):
    type: Literal["output_audio_buffer.clear"]


CLIENT_EVENTS: dict[str, type[ClientEvent]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        SessionUpdate,
        InputAudioBufferAppend,
        InputAudioBufferCommit,
        InputAudioBufferClear,
        ConversationItemCreate,
        ConversationItemRetrieve,
        ConversationItemDelete,
        ConversationItemTruncate,
        ResponseCreate,
        ResponseCancel,
        OutputAudioBufferClear,
    )
}
# Client event names did not change between beta and GA; beta aliases matter in the payloads
# (`modalities`, `voice`, `pcm16`, content types `text`/`audio`), which the models above accept.
