"""GPT-Live client events as pydantic models, validated on the way in (server/protocol/live.py).

As for the Realtime dialect (models.py): every field OpenAI defines (the `openai` SDK's
`types/live`) is accepted, fields it does not define are refused (`unknown_parameter`), and
what this server cannot do is refused by the machine with a clear `unsupported_feature`, never
dropped in silence. Shapes this server does not act on at all (Decisions, audio fixtures) are
accepted loosely here so that the machine can say which feature is missing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.protocol.errors import ErrorCode, ProtocolError
from server.protocol.models import NonNegative, Positive, Strict

MAX_INITIAL_ITEMS = 128  # OpenAI's limit on `session.input`
# `session.*.append` content: OpenAI allows 500 tokens; counted here in characters, generously
# (pipecat cuts its appends at about 450 estimated tokens, 1800 ASCII characters)
MAX_APPEND_CHARS = 4000

# pydantic error type -> our code; anything else is a wrong type or value
_VALIDATION_CODES = {
    "missing": ErrorCode.MISSING_REQUIRED_PARAMETER,
    "extra_forbidden": ErrorCode.UNKNOWN_PARAMETER,
}


class Loose(BaseModel):
    """A shape this server refuses as a whole (with `unsupported_feature`): any fields."""

    model_config = ConfigDict(extra="allow")


# --- session configuration -----------------------------------------------------------------


class LiveFormatIn(Strict):
    """One format for both directions: `audio/pcm` at 16 or 24 kHz, or G.711 at 8 kHz."""

    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
    rate: int | None = None


class CustomVoiceIn(Strict):
    id: str


class LiveAudioOutputIn(Strict):
    voice: str | CustomVoiceIn | None = None


class LiveAudioIn(Strict):
    format: LiveFormatIn | None = None
    output: LiveAudioOutputIn | None = None


class ClientDelegationIn(Strict):
    type: Literal["client"]
    acknowledgement_delay_ms: NonNegative | None = None


class BackendReasoningIn(Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["concise", "detailed", "auto"] | None = None


class BackendTextIn(Strict):
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesConfigIn(Strict):
    """`delegation.responses`: the backend's settings. `model` is required at start (checked
    by the machine, since an update may leave it out)."""

    model: str | None = None
    instructions: str | None = None
    max_output_tokens: Positive | None = None
    parallel_tool_calls: bool | None = None
    reasoning: BackendReasoningIn | None = None
    service_tier: str | None = None
    text: BackendTextIn | None = None
    tool_choice: Any = None  # checked by the machine: function choices only
    tools: list[dict[str, Any]] | None = None  # checked by the machine: function tools only


class ResponsesDelegationIn(Strict):
    type: Literal["responses"]
    responses: ResponsesConfigIn | None = None  # required at start (checked by the machine)
    acknowledgement_delay_ms: NonNegative | None = None


class DecisionsDelegationIn(Loose):
    type: Literal["decisions"]


Delegation = Annotated[
    ClientDelegationIn | ResponsesDelegationIn | DecisionsDelegationIn,
    Field(discriminator="type"),
]


class InitialContentIn(Strict):
    type: Literal["input_text", "text", "output_text"] | None = None
    text: str


class InitialItemIn(Strict):
    """A prior text message of `session.input`: developer, user or assistant, one text part."""

    role: Literal["developer", "user", "assistant"]
    content: Annotated[list[InitialContentIn], Field(min_length=1, max_length=1)]
    id: str | None = None
    status: Literal["incomplete", "completed"] | None = None
    type: Literal["message"] | None = None


class LiveSessionIn(Strict):
    """`session.start`'s `session`."""

    model: Annotated[str, Field(min_length=1, max_length=256)]
    instructions: str | None = None
    audio: LiveAudioIn | None = None
    delegation: Delegation | None = None
    input: Annotated[list[InitialItemIn], Field(max_length=MAX_INITIAL_ITEMS)] | None = None
    store: bool | None = None
    safety_identifier: Annotated[str, Field(max_length=512)] | None = None
    triggers: list[Any] | None = None  # Decisions triggers: only an empty list is served
    client: Any = None  # WebRTC front-end permissions: not for a WebSocket session


class LiveSessionUpdateIn(Strict):
    """`session.update`'s `session`: delegation settings and triggers, nothing else."""

    delegation: Delegation | None = None
    triggers: list[Any] | None = None


# --- client events -------------------------------------------------------------------------


class LiveClientEvent(Strict):
    event_id: Annotated[str, Field(max_length=512)] | None = None


class SessionStart(LiveClientEvent):
    type: Literal["session.start"]
    session: LiveSessionIn


class SessionUpdate(LiveClientEvent):
    type: Literal["session.update"]
    session: LiveSessionUpdateIn


class InputAudioAppend(LiveClientEvent):
    type: Literal["session.input_audio.append"]
    audio: str


class InputAudioMute(LiveClientEvent):
    type: Literal["session.input_audio.mute"]


class InputAudioUnmute(LiveClientEvent):
    type: Literal["session.input_audio.unmute"]


class ContextAppend(LiveClientEvent):
    """`session.instructions|thinking|commentary.append`: `delegation_id` is required and
    nullable (null: general context; else a client delegation's id)."""

    content: str
    delegation_id: str | None


class InstructionsAppend(ContextAppend):
    type: Literal["session.instructions.append"]


class ThinkingAppend(ContextAppend):
    type: Literal["session.thinking.append"]


class CommentaryAppend(ContextAppend):
    type: Literal["session.commentary.append"]


class OutputTextPartIn(Strict):
    type: Literal["input_text", "output_text", "text"]
    text: str


class FunctionCallOutputIn(Strict):
    """A `function_call_output` input item (Responses shape)."""

    type: Literal["function_call_output"]
    call_id: Annotated[str, Field(min_length=1, max_length=128)]
    output: str | list[OutputTextPartIn]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    name: str | None = None
    namespace: str | None = None
    caller: Any = None


class MessageItemIn(Strict):
    """A text message input item (Responses shape, `EasyInputMessage` or `message`)."""

    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[OutputTextPartIn]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class ResponseItemCreate(LiveClientEvent):
    type: Literal["response.item.create"]
    item: dict[str, Any]  # a Responses input item: checked by the machine


class ResponseCreate(LiveClientEvent):
    type: Literal["response.create"]


class SessionClose(LiveClientEvent):
    type: Literal["session.close"]


class Unsupported(Loose):
    """A client event of GPT-Live that this server does not serve (see the machine)."""

    type: str
    event_id: str | None = None


LIVE_CLIENT_EVENTS: dict[str, type[BaseModel]] = {
    "session.start": SessionStart,
    "session.update": SessionUpdate,
    "session.input_audio.append": InputAudioAppend,
    "session.input_audio.mute": InputAudioMute,
    "session.input_audio.unmute": InputAudioUnmute,
    "session.instructions.append": InstructionsAppend,
    "session.thinking.append": ThinkingAppend,
    "session.commentary.append": CommentaryAppend,
    "response.item.create": ResponseItemCreate,
    "response.create": ResponseCreate,
    "session.close": SessionClose,
    # GPT-Live's, not served here: each answered with `unsupported_feature`
    "session.output_audio.fixture.play": Unsupported,
    "decision.create": Unsupported,
    "decision.item.create": Unsupported,
    "decision.item.delete": Unsupported,
}


def validate_live(data: dict[str, Any]) -> BaseModel:
    """The client event `data` is, validated; raises `ProtocolError` saying what to fix."""
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise ProtocolError(
            ErrorCode.MISSING_EVENT_TYPE, "every client event needs a string 'type'", "type"
        )
    model = LIVE_CLIENT_EVENTS.get(type_)
    if model is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_EVENT_TYPE,
            f"unknown event type {type_!r} for GPT-Live; known types: {sorted(LIVE_CLIENT_EVENTS)}",
            "type",
        )
    return validated(model, data, type_)


def validated(model: type[BaseModel], data: Any, where: str, prefix: str = "") -> Any:
    """`data` validated by `model`, or the `ProtocolError` of its first problem (`param` is
    the field's path, after `prefix`)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        path = [str(part) for part in first["loc"]]
        param = ".".join([prefix, *path] if prefix else path)
        code = _VALIDATION_CODES.get(first["type"], ErrorCode.INVALID_VALUE)
        raise ProtocolError(code, f"{where}: {param}: {first['msg']}", param) from None
