"""The session's configuration in one canonical form, and how `session.update` changes it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from server.audio import PCM_16K, PCM_24K, PCMA, PCMU, AudioFormat
from server.protocol.errors import ErrorCode, ProtocolError
from server.protocol.models import FormatIn, ResponseIn, SessionIn, TurnDetectionIn
from server.vad import ServerVad

BETA_FORMATS = {"pcm16": PCM_24K, "g711_ulaw": PCMU, "g711_alaw": PCMA}
BETA_FORMAT_NAMES = {fmt: name for name, fmt in BETA_FORMATS.items()}
PCM_RATES = {24_000: PCM_24K, 16_000: PCM_16K}


@dataclass(frozen=True)
class SessionConfig:
    model: str = "step-audio-r1"
    instructions: str = ""
    output_modalities: tuple[str, ...] = ("audio",)
    input_format: AudioFormat = PCM_24K
    output_format: AudioFormat = PCM_24K
    voice: str = ""
    speed: float = 1.0
    turn_detection: ServerVad | None = field(default_factory=ServerVad)
    reasoning_effort: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None


def parse_format(fmt: FormatIn, param: str) -> AudioFormat:
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


def _max_tokens(value: int | str | None) -> int | None:
    return None if value in (None, "inf") else int(value)  # type: ignore[arg-type]


def _turn_detection(td: TurnDetectionIn | None, current: ServerVad | None) -> ServerVad | None:
    if td is None:
        return None
    if td.type == "semantic_vad":
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FEATURE,
            "turn_detection type 'semantic_vad' is not supported; use 'server_vad' or null",
            "session.audio.input.turn_detection.type",
        )
    base = current or ServerVad()
    given = {k: v for k, v in td.model_dump(exclude={"type", "eagerness"}).items() if v is not None}
    return dataclasses.replace(base, **given)


def check_voice(voice: str, voices: list[str], param: str) -> str:
    if voices and voice not in voices:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE, f"unknown voice {voice!r}; valid voices: {voices}", param
        )
    return voice


def _refuse_tools(tools: list[object] | None, param: str) -> None:
    if tools:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FEATURE, "tools are not supported by this server; send []", param
        )


def apply_update(config: SessionConfig, update: SessionIn, voices: list[str]) -> SessionConfig:
    """The configuration after `session.update`; fields the update leaves out keep their value."""
    _refuse_tools(update.tools, "session.tools")
    changes: dict[str, object] = {}
    given = update.model_fields_set
    if update.model is not None:
        changes["model"] = update.model
    if update.instructions is not None:
        changes["instructions"] = update.instructions
    modalities = update.output_modalities or update.modalities
    if modalities is not None:
        changes["output_modalities"] = _modalities(modalities, "session.output_modalities")
    if update.max_output_tokens is not None or update.max_response_output_tokens is not None:
        changes["max_output_tokens"] = _max_tokens(
            update.max_output_tokens or update.max_response_output_tokens
        )
    if update.reasoning is not None and update.reasoning.effort is not None:
        changes["reasoning_effort"] = update.reasoning.effort
    if update.temperature is not None:
        changes["temperature"] = update.temperature
    # beta flat fields
    if update.input_audio_format is not None:
        changes["input_format"] = BETA_FORMATS[update.input_audio_format]
    if update.output_audio_format is not None:
        changes["output_format"] = BETA_FORMATS[update.output_audio_format]
    if update.voice is not None:
        changes["voice"] = check_voice(update.voice, voices, "session.voice")
    if update.speed is not None:
        changes["speed"] = update.speed
    if "turn_detection" in given:
        changes["turn_detection"] = _turn_detection(update.turn_detection, config.turn_detection)
    # GA nested audio
    audio_in = update.audio.input if update.audio else None
    audio_out = update.audio.output if update.audio else None
    if audio_in is not None:
        if audio_in.format is not None:
            changes["input_format"] = parse_format(audio_in.format, "session.audio.input.format")
        if "turn_detection" in audio_in.model_fields_set:
            changes["turn_detection"] = _turn_detection(
                audio_in.turn_detection, config.turn_detection
            )
    if audio_out is not None:
        if audio_out.format is not None:
            changes["output_format"] = parse_format(audio_out.format, "session.audio.output.format")
        if audio_out.voice is not None:
            changes["voice"] = check_voice(audio_out.voice, voices, "session.audio.output.voice")
        if audio_out.speed is not None:
            changes["speed"] = audio_out.speed
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def _modalities(modalities: Sequence[str], param: str) -> tuple[str, ...]:
    if not modalities:
        raise ProtocolError(ErrorCode.INVALID_VALUE, "modalities must not be empty", param)
    # ["text", "audio"] means audio with its transcript, as OpenAI treats it
    return ("audio",) if "audio" in modalities else ("text",)


@dataclass(frozen=True)
class ResponseOptions:
    """One response's settings: the session's, with `response.create` overrides applied."""

    instructions: str
    output_modalities: tuple[str, ...]
    output_format: AudioFormat
    voice: str
    max_output_tokens: int | None
    temperature: float | None
    reasoning_effort: str | None
    metadata: dict[str, str] | None = None


def response_options(
    config: SessionConfig, overrides: ResponseIn | None, voices: list[str]
) -> ResponseOptions:
    options = ResponseOptions(
        instructions=config.instructions,
        output_modalities=config.output_modalities,
        output_format=config.output_format,
        voice=config.voice,
        max_output_tokens=config.max_output_tokens,
        temperature=config.temperature,
        reasoning_effort=config.reasoning_effort,
    )
    if overrides is None:
        return options
    _refuse_tools(overrides.tools, "response.tools")
    if overrides.conversation not in (None, "auto") or overrides.input is not None:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FEATURE,
            "out-of-band responses (conversation other than 'auto', or input) are not supported",
            "response.conversation",
        )
    changes: dict[str, object] = {"metadata": overrides.metadata}
    if overrides.instructions is not None:
        changes["instructions"] = overrides.instructions
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
    tokens = overrides.max_output_tokens or overrides.max_response_output_tokens
    if tokens is not None:
        changes["max_output_tokens"] = _max_tokens(tokens)
    if overrides.temperature is not None:
        changes["temperature"] = overrides.temperature
    if overrides.reasoning is not None and overrides.reasoning.effort is not None:
        changes["reasoning_effort"] = overrides.reasoning.effort
    return dataclasses.replace(options, **changes)  # type: ignore[arg-type]
