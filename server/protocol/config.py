"""The session's configuration in one canonical form, and how `session.update` changes it.

`apply_update` checks the update one field at a time: a field that fails validation, or names
something this server cannot do, is refused alone (one `ProtocolError` for it) while the rest of
the update applies. Clients such as livekit-agents send a whole session at once; losing all of
it to one field would silently drop their instructions, voice and tools.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from server.protocol import models as m
from server.protocol.audio import PCM_16K, PCM_24K, PCMA, PCMU, AudioFormat
from server.protocol.errors import ErrorCode, ProtocolError
from streaming.responder import Truncation
from streaming.turns.detection import SemanticVad, ServerVad, TurnDetection

BETA_FORMATS = {"pcm16": PCM_24K, "g711_ulaw": PCMU, "g711_alaw": PCMA}
BETA_FORMAT_NAMES = {fmt: name for name, fmt in BETA_FORMATS.items()}
PCM_RATES = {24_000: PCM_24K, 16_000: PCM_16K}
# Objects of `session` whose fields are checked one by one; every other field is checked whole
# (a turn_detection's type says what its other fields mean).
DESCEND: dict[str, type[BaseModel]] = {
    "audio": m.AudioIn,
    "audio.input": m.AudioInputIn,
    "audio.output": m.AudioOutputIn,
}
# pydantic error type -> our code; anything else is a wrong type or value
VALIDATION_CODES = {
    "missing": ErrorCode.MISSING_REQUIRED_PARAMETER,
    "extra_forbidden": ErrorCode.UNKNOWN_PARAMETER,
}


@dataclass(frozen=True)
class SessionLimits:
    """Per-session caps on what configuration may hold (memory a client can pin), and what
    this server cannot serve."""

    max_instructions_chars: int = 64_000
    max_tools: int = 128
    max_tools_json_bytes: int = 256 * 1024
    # Why semantic_vad cannot run on this server (its end-of-turn model is not installed: see
    # server/startup.py); a session asking for it gets this in an error event. None: it runs.
    semantic_vad_missing: str | None = None


@dataclass(frozen=True)
class Transcription:
    """`audio.input.transcription` as asked (the served model does the work whatever the
    model name says)."""

    model: str = ""
    language: str | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class SessionConfig:
    model: str = "step-audio-r1"
    instructions: str = ""
    output_modalities: tuple[str, ...] = ("audio",)
    input_format: AudioFormat = PCM_24K
    output_format: AudioFormat = PCM_24K
    voice: str = ""
    speed: float = 1.0
    turn_detection: TurnDetection | None = field(default_factory=ServerVad)
    reasoning_effort: str = "medium"
    max_output_tokens: int | None = None
    temperature: float | None = None
    transcription: Transcription | None = None
    tools: tuple[dict[str, Any], ...] = ()  # Realtime function tools, as given
    tool_choice: str | dict[str, str] = "auto"
    include: tuple[str, ...] = ()
    truncation: Truncation = field(default_factory=Truncation)

    @property
    def reasoning_visible(self) -> bool:
        return m.INCLUDE_REASONING in self.include


def parse_format(fmt: m.FormatIn, param: str) -> AudioFormat:
    if fmt.type == "audio/pcmu":
        return PCMU
    if fmt.type == "audio/pcma":
        return PCMA
    rate = fmt.rate or 24_000
    if rate not in PCM_RATES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT,
            f"audio/pcm at {rate} Hz is not supported; use rate 24000 or 16000",
            param,
        )
    return PCM_RATES[rate]


def render_format(fmt: AudioFormat) -> dict[str, object]:
    if fmt.codec == "pcmu":
        return {"type": "audio/pcmu"}
    if fmt.codec == "pcma":
        return {"type": "audio/pcma"}
    return {"type": "audio/pcm", "rate": fmt.sample_rate}


def render_beta_format(fmt: AudioFormat) -> str:
    # 16 kHz PCM has no beta name; beta clients cannot select it, so this is only a fallback.
    return BETA_FORMAT_NAMES.get(fmt, "pcm16")


def check_voice(voice: str, voices: list[str], param: str) -> str:
    if voices and voice not in voices:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE, f"unknown voice {voice!r}; valid voices: {voices}", param
        )
    return voice


# --- field-by-field validation -------------------------------------------------------------


def split_valid(
    model: type[BaseModel], data: dict[str, Any], path: str
) -> tuple[dict[str, Any], list[ProtocolError]]:
    """The keys of `data` that `model` accepts (descending into nested objects, so that one
    bad leaf is refused alone), and an error for each one it refuses."""
    valid: dict[str, Any] = {}
    errors: list[ProtocolError] = []
    for key, value in data.items():
        param = f"{path}.{key}"
        info = model.model_fields.get(key)
        if info is None:
            errors.append(
                ProtocolError(ErrorCode.UNKNOWN_PARAMETER, f"unknown parameter {param}", param)
            )
            continue
        nested = DESCEND.get(param.split(".", 1)[1] if "." in param else param)
        if nested is not None and isinstance(value, dict):
            inner, inner_errors = split_valid(nested, value, param)
            errors += inner_errors
            if inner or not value:
                valid[key] = inner
            continue
        try:
            model.model_validate({key: value})
        except ValidationError as error:
            errors.append(_validation_error(error, param))
        else:
            valid[key] = value
    return valid, errors


def _validation_error(error: ValidationError, param: str) -> ProtocolError:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:])
    full = f"{param}.{where}" if where else param
    code = VALIDATION_CODES.get(first["type"], ErrorCode.INVALID_VALUE)
    return ProtocolError(code, f"{full}: {first['msg']}", full)


# --- applying an update --------------------------------------------------------------------


def apply_update(
    config: SessionConfig,
    raw: dict[str, Any],
    voices: list[str],
    limits: SessionLimits | None = None,
) -> tuple[SessionConfig, list[ProtocolError]]:
    """The configuration after `session.update`, and the errors of the fields it refused.
    Fields the update leaves out, or that were refused, keep their value."""
    limits = limits or SessionLimits()
    valid, errors = split_valid(m.SessionIn, raw, "session")
    update = m.SessionIn.model_validate(valid)
    changes: dict[str, object] = {}
    for step in _STEPS:
        try:
            changes.update(step(update, config, voices, limits))
        except ProtocolError as error:
            errors.append(error)
    return dataclasses.replace(config, **changes), errors  # type: ignore[arg-type]


Step = Callable[[m.SessionIn, SessionConfig, list[str], SessionLimits], dict[str, object]]


def _instructions_step(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    if update.instructions is None:
        return {}
    return {"instructions": _instructions(update.instructions, limits, "session")}


def _modalities_step(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    modalities = update.output_modalities or update.modalities
    if modalities is None:
        return {}
    return {"output_modalities": _modalities(modalities, "session.output_modalities")}


def _text(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    """The fields that cannot be refused once they validate."""
    changes: dict[str, object] = {}
    if update.model is not None:
        changes["model"] = update.model
    tokens = _first_set(update, "max_output_tokens", "max_response_output_tokens")
    if tokens is not _UNSET:
        changes["max_output_tokens"] = _max_tokens(tokens)  # type: ignore[arg-type]
    if update.reasoning is not None and update.reasoning.effort is not None:
        changes["reasoning_effort"] = update.reasoning.effort
    if update.temperature is not None:
        changes["temperature"] = update.temperature
    if update.include is not None:
        changes["include"] = tuple(dict.fromkeys(update.include))
    if update.truncation is not None:
        changes["truncation"] = _truncation(update.truncation)
    return changes


def _input_format(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    audio_in = update.audio.input if update.audio else None
    if audio_in is not None and audio_in.format is not None:
        return {"input_format": parse_format(audio_in.format, "session.audio.input.format")}
    if update.input_audio_format is not None:  # beta
        return {"input_format": BETA_FORMATS[update.input_audio_format]}
    return {}


def _output_format(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    audio_out = update.audio.output if update.audio else None
    if audio_out is not None and audio_out.format is not None:
        return {"output_format": parse_format(audio_out.format, "session.audio.output.format")}
    if update.output_audio_format is not None:  # beta
        return {"output_format": BETA_FORMATS[update.output_audio_format]}
    return {}


def _speed(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    audio_out = update.audio.output if update.audio else None
    speed = audio_out.speed if audio_out is not None else None
    speed = speed if speed is not None else update.speed
    return {} if speed is None else {"speed": speed}


def _voice(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    audio_out = update.audio.output if update.audio else None
    if audio_out is not None and audio_out.voice is not None:
        return {"voice": check_voice(audio_out.voice, voices, "session.audio.output.voice")}
    if update.voice is not None:
        return {"voice": check_voice(update.voice, voices, "session.voice")}
    return {}


def _turn_detection_step(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    audio_in = update.audio.input if update.audio else None
    if audio_in is not None and "turn_detection" in audio_in.model_fields_set:
        given, param = audio_in.turn_detection, "session.audio.input.turn_detection"
    elif "turn_detection" in update.model_fields_set:
        given, param = update.turn_detection, "session.turn_detection"
    else:
        return {}
    if given is not None and given.type == "semantic_vad" and limits.semantic_vad_missing:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FEATURE,
            f"semantic_vad is not available on this server: {limits.semantic_vad_missing}. "
            "The session keeps its turn detection; server_vad is available",
            f"{param}.type",
        )
    return {"turn_detection": turn_detection(given, config.turn_detection)}


def _transcription_step(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    audio_in = update.audio.input if update.audio else None
    if audio_in is not None and "transcription" in audio_in.model_fields_set:
        return {"transcription": _transcription(audio_in.transcription)}
    if "input_audio_transcription" in update.model_fields_set:
        return {"transcription": _transcription(update.input_audio_transcription)}
    return {}


def _tools_step(
    update: m.SessionIn, config: SessionConfig, voices: list[str], limits: SessionLimits
) -> dict[str, object]:
    changes: dict[str, object] = {}
    if update.tools is not None:
        changes["tools"] = tools_of(update.tools, limits, "session.tools")
    if update.tool_choice is not None:
        tools = changes.get("tools", config.tools)
        changes["tool_choice"] = tool_choice(update.tool_choice, tools, "session.tool_choice")  # type: ignore[arg-type]
    return changes


_STEPS: tuple[Step, ...] = (
    _text,
    _instructions_step,
    _modalities_step,
    _input_format,
    _output_format,
    _speed,
    _voice,
    _turn_detection_step,
    _transcription_step,
    _tools_step,
)


class _Unset:
    pass


_UNSET = _Unset()


def _first_set(model: BaseModel, *names: str) -> object:
    for name in names:
        if name in model.model_fields_set:
            return getattr(model, name)
    return _UNSET


def _max_tokens(value: int | str | None) -> int | None:
    return None if value in (None, "inf") else int(value)


def _instructions(text: str, limits: SessionLimits, path: str) -> str:
    if len(text) > limits.max_instructions_chars:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"instructions of {len(text)} characters are over the limit of "
            f"{limits.max_instructions_chars}; shorten them",
            f"{path}.instructions",
        )
    return text


def turn_detection(
    td: m.TurnDetectionIn | None, current: TurnDetection | None
) -> TurnDetection | None:
    if td is None:
        return None
    given = {k: v for k, v in td.model_dump(exclude={"type"}).items() if v is not None}
    if td.type == "semantic_vad":
        taken = {"eagerness", "create_response", "interrupt_response", "merge_window_ms"}
        refused = sorted(set(given) - taken)
        if refused:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PARAMETER,
                f"semantic_vad takes eagerness, create_response, interrupt_response and "
                f"merge_window_ms, not {refused}",
                "session.audio.input.turn_detection",
            )
        base = current if isinstance(current, SemanticVad) else SemanticVad()
        return dataclasses.replace(base, **given)
    if "eagerness" in given:
        raise ProtocolError(
            ErrorCode.UNKNOWN_PARAMETER,
            "eagerness belongs to semantic_vad; server_vad takes threshold, prefix_padding_ms, "
            "silence_duration_ms, create_response, interrupt_response, idle_timeout_ms and "
            "merge_window_ms",
            "session.audio.input.turn_detection.eagerness",
        )
    base_vad = current if isinstance(current, ServerVad) else ServerVad()
    return dataclasses.replace(base_vad, **given)


def _transcription(given: m.TranscriptionIn | None) -> Transcription | None:
    if given is None:
        return None
    return Transcription(given.model or "", given.language, given.prompt)


def _truncation(given: str | m.RetentionRatioIn) -> Truncation:
    if isinstance(given, str):
        return Truncation(given)  # type: ignore[arg-type]
    return Truncation("retention_ratio", given.retention_ratio)


def tools_of(
    tools: Sequence[m.ToolIn], limits: SessionLimits, param: str
) -> tuple[dict[str, Any], ...]:
    """Realtime function tools as the prompt renders them; names must be unique."""
    if len(tools) > limits.max_tools:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"{len(tools)} tools are over the limit of {limits.max_tools}",
            param,
        )
    rendered = tuple(tool.model_dump(exclude_none=True, exclude={"strict"}) for tool in tools)
    names = [tool["name"] for tool in rendered]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE, f"tool names must be unique: {repeated}", param
        )
    size = len(json.dumps(rendered, ensure_ascii=False).encode())
    if size > limits.max_tools_json_bytes:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"the tools take {size} bytes of JSON, over the limit of {limits.max_tools_json_bytes}",
            param,
        )
    for tool in rendered:
        parameters = tool.get("parameters")
        if parameters is not None and parameters.get("type", "object") != "object":
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"tool {tool['name']!r}: parameters must be a JSON schema of type 'object'",
                param,
            )
    return rendered


def tool_choice(
    choice: str | m.ToolChoiceFunctionIn, tools: Sequence[dict[str, Any]], param: str
) -> str | dict[str, str]:
    if isinstance(choice, str):
        return choice
    if choice.name not in {tool["name"] for tool in tools}:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"tool_choice names {choice.name!r}, which is not a tool",
            param,
        )
    return {"type": "function", "name": choice.name}


def _modalities(modalities: Sequence[str], param: str) -> tuple[str, ...]:
    if not modalities:
        raise ProtocolError(ErrorCode.INVALID_VALUE, "modalities must not be empty", param)
    # ["text", "audio"] means audio with its transcript, as OpenAI treats it
    return ("audio",) if "audio" in modalities else ("text",)


# --- one response --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseOptions:
    """One response's settings: the session's, with `response.create` overrides applied."""

    instructions: str
    output_modalities: tuple[str, ...]
    output_format: AudioFormat
    voice: str
    max_output_tokens: int | None
    temperature: float | None
    reasoning_effort: str
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, str] = "auto"
    metadata: dict[str, str] | None = None

    @property
    def prompt_tools(self) -> list[dict[str, Any]]:
        """The tools the model is shown: none where `tool_choice` is `none`."""
        return [] if self.tool_choice == "none" else list(self.tools)


def response_options(
    config: SessionConfig,
    overrides: m.ResponseIn | None,
    voices: list[str],
    limits: SessionLimits | None = None,
) -> ResponseOptions:
    options = ResponseOptions(
        instructions=config.instructions,
        output_modalities=config.output_modalities,
        output_format=config.output_format,
        voice=config.voice,
        max_output_tokens=config.max_output_tokens,
        temperature=config.temperature,
        reasoning_effort=config.reasoning_effort,
        tools=config.tools,
        tool_choice=config.tool_choice,
    )
    if overrides is None:
        return options
    limits = limits or SessionLimits()
    if overrides.conversation not in (None, "auto") or overrides.input is not None:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FEATURE,
            "out-of-band responses (conversation other than 'auto', or input) are not supported",
            "response.conversation",
        )
    changes: dict[str, object] = {"metadata": overrides.metadata}
    if overrides.instructions is not None:
        changes["instructions"] = _instructions(overrides.instructions, limits, "response")
    modalities = overrides.output_modalities or overrides.modalities
    if modalities is not None:
        changes["output_modalities"] = _modalities(modalities, "response.output_modalities")
    voice = overrides.voice
    output = overrides.audio.output if overrides.audio else None
    if output is not None and output.voice is not None:
        voice = output.voice
    if voice is not None:
        changes["voice"] = check_voice(voice, voices, "response.audio.output.voice")
    if overrides.output_audio_format is not None:
        changes["output_format"] = BETA_FORMATS[overrides.output_audio_format]
    if output is not None and output.format is not None:
        changes["output_format"] = parse_format(output.format, "response.audio.output.format")
    tokens = _first_set(overrides, "max_output_tokens", "max_response_output_tokens")
    if tokens is not _UNSET:
        changes["max_output_tokens"] = _max_tokens(tokens)  # type: ignore[arg-type]
    if overrides.temperature is not None:
        changes["temperature"] = overrides.temperature
    if overrides.reasoning is not None and overrides.reasoning.effort is not None:
        changes["reasoning_effort"] = overrides.reasoning.effort
    if overrides.tools is not None:
        changes["tools"] = tools_of(overrides.tools, limits, "response.tools")
    if overrides.tool_choice is not None:
        tools = changes.get("tools", options.tools)
        changes["tool_choice"] = tool_choice(overrides.tool_choice, tools, "response.tool_choice")  # type: ignore[arg-type]
    return dataclasses.replace(options, **changes)  # type: ignore[arg-type]
