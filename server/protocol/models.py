"""Client events as pydantic models: GA shapes and the beta aliases, validated on the way in.

Fields that OpenAI defines but this server does not act on (tracing, prompt, ...) are
accepted and ignored, so that existing clients work; fields OpenAI does not define are refused
(`unknown_parameter`), so that a typo is reported rather than silently dropped.

`session.update` is validated field by field (`server.protocol.config.apply_update`), so that
one bad field is refused alone and the rest of the update applies: its `session` arrives as a
plain object and is checked against `SessionIn` one key at a time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from streaming.responder import REASONING_EFFORTS

Modality = Literal["text", "audio"]
BetaFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]
Effort = Literal["minimal", "low", "medium", "high", "xhigh"]
assert set(Effort.__args__) == set(REASONING_EFFORTS)  # type: ignore[attr-defined]
NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
MaxTokens = Positive | Literal["inf"] | None
# OpenAI's (and chat completions') rule for function names
FunctionName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
# What `include` may ask for: OpenAI's transcription logprobs (accepted, not produced), and our
# reasoning stream (`response.reasoning_text.*` goes only to clients that ask for it).
INCLUDE_REASONING = "response.reasoning_text"
IncludeEntry = Literal["item.input_audio_transcription.logprobs", "response.reasoning_text"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- session configuration -----------------------------------------------------------------


class FormatIn(Strict):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
    rate: int | None = None


class TurnDetectionIn(Strict):
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    prefix_padding_ms: Annotated[int, Field(ge=0, le=5000)] | None = None
    silence_duration_ms: Annotated[int, Field(ge=0, le=60_000)] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: Annotated[int, Field(ge=1)] | None = None
    eagerness: Literal["low", "medium", "high", "auto"] | None = None  # semantic_vad only
    merge_window_ms: Annotated[int, Field(ge=0, le=10_000)] | None = None  # our extension


class TranscriptionIn(Strict):
    """`audio.input.transcription`: any model name; the served model transcribes."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class NoiseReductionIn(Strict):
    type: Literal["near_field", "far_field"]


class AudioInputIn(Strict):
    format: FormatIn | None = None
    turn_detection: TurnDetectionIn | None = None
    transcription: TranscriptionIn | None = None
    noise_reduction: NoiseReductionIn | None = None


class AudioOutputIn(Strict):
    format: FormatIn | None = None
    voice: str | None = None
    speed: Annotated[float, Field(ge=0.25, le=1.5)] | None = None


class AudioIn(Strict):
    input: AudioInputIn | None = None
    output: AudioOutputIn | None = None


class ReasoningIn(Strict):
    effort: Effort | None = None


class ToolIn(Strict):
    """A function tool, Realtime shape (`{"type": "function", "name", ...}`)."""

    type: Literal["function"] = "function"
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # chat-completions field some clients send; not enforced


class ToolChoiceFunctionIn(Strict):
    type: Literal["function"]
    name: FunctionName


ToolChoice = Literal["auto", "none", "required"] | ToolChoiceFunctionIn


class TokenLimitsIn(Strict):
    post_instructions: NonNegative | None = None


class RetentionRatioIn(Strict):
    type: Literal["retention_ratio"]
    retention_ratio: Annotated[float, Field(gt=0.0, le=1.0)]
    token_limits: TokenLimitsIn | None = None


Truncation = Literal["auto", "disabled"] | RetentionRatioIn


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
    include: list[IncludeEntry] | None = None
    truncation: Truncation | None = None
    # beta
    modalities: list[Modality] | None = None
    input_audio_format: BetaFormat | None = None
    output_audio_format: BetaFormat | None = None
    voice: str | None = None
    speed: Annotated[float, Field(ge=0.25, le=1.5)] | None = None
    turn_detection: TurnDetectionIn | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    max_response_output_tokens: MaxTokens = None
    input_audio_transcription: TranscriptionIn | None = None
    input_audio_noise_reduction: NoiseReductionIn | None = None
    # both
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoice | None = None
    # accepted, not acted on
    tracing: Any = None
    prompt: Any = None
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
    id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    object: Literal["realtime.item"] | None = None
    role: Literal["user", "assistant", "system"] | None = None
    status: Any = None
    content: list[ContentIn] = Field(default_factory=list)
    call_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    name: FunctionName | None = None
    arguments: str | None = None
    output: str | None = None


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
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoice | None = None
    prompt: Any = None
    parallel_tool_calls: Any = None


# --- client events -------------------------------------------------------------------------


class ClientEvent(Strict):
    event_id: str | None = None


class SessionUpdate(ClientEvent):
    type: Literal["session.update"]
    session: dict[str, Any]  # checked field by field against SessionIn


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
