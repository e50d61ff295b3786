"""Server settings: a frozen dataclass; each field is a CLI flag and a STEP_REALTIME_* variable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streaming.responder import REASONING_EFFORTS

ENV_PREFIX = "STEP_REALTIME_"
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


def _opt(default: Any, help_: str) -> Any:
    return field(default=default, metadata={"help": help_})


@dataclass(frozen=True)
class Settings:
    host: str | None = _opt(None, "bind address; default 127.0.0.1 without API keys, 0.0.0.0 with")
    port: int = _opt(8000, "TCP port; 0 picks a free one")
    api_keys: tuple[str, ...] = _opt(
        (), "comma-separated API keys; none: no authentication (loopback only)"
    )
    allow_remote_without_auth: bool = _opt(
        False, "allow binding a non-loopback address with no API key configured"
    )
    max_sessions: int = _opt(16, "concurrent sessions; beyond: error and close 1013")
    max_session_seconds: float = _opt(3600.0, "a session ends after this long")
    idle_timeout_seconds: float = _opt(
        600.0, "close a session after this long without a client message"
    )
    client_secret_ttl_seconds: int = _opt(
        600, "default lifetime of keys minted by POST /v1/realtime/client_secrets"
    )
    max_message_bytes: int = _opt(
        4 * 1024 * 1024, "largest client message handled; larger ones get an error event"
    )
    max_input_buffer_seconds: float = _opt(600.0, "most uncommitted input audio a session holds")
    send_queue_events: int = _opt(
        256, "per-connection send queue high-water mark; the responder waits above it"
    )
    first_audio_target_seconds: float = _opt(
        0.92, "first-packet latency target, exported as a gauge"
    )
    speculative_start_ms: int = _opt(
        60,
        "start a response after this much silence inside a turn, before it commits (two 30 ms "
        "VAD frames: see benchmarks/speculation.py for false starts against savings); 0: off",
    )
    model_name: str = _opt("step-audio-r1", "model name reported in session objects")
    default_voice: str | None = _opt(
        None, "voice of new sessions; default: the responder's first voice"
    )
    reasoning_effort: str | None = _opt(
        None, "default session.reasoning.effort (minimal|low|medium|high|xhigh)"
    )
    instructions: str = _opt("", "default session instructions")
    log_level: str = _opt("info", "log level (debug|info|warning|error)")
    # The model side (ignored with --responder).
    model: str | None = _opt(
        None,
        "checkpoint directory (Step-Audio-R1 / Step-Audio-2 format); default: the embedded model",
    )
    device: str = _opt("auto", "auto (CUDA if present, else CPU), cpu, cuda, cuda:N")
    dtype: str = _opt("auto", "auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    max_sequences: int = _opt(16, "engine batch: sequences decoded together (KV cache slots)")
    max_seq_len: int = _opt(4096, "longest sequence (prompt and reply) in tokens per slot")
    tts_backend: str = _opt("espeak", "speech synthesis backend: espeak, kokoro")
    temperature: float = _opt(0.0, "default sampling temperature; 0 is greedy")
    reasoning_segment_tokens: int = _opt(
        80, "thinking while speaking: reasoning tokens per segment (Tc)"
    )
    answer_segment_tokens: int = _opt(20, "thinking while speaking: answer tokens per segment (Tr)")
    reasoning_budget: int | None = _opt(
        None, "most reasoning tokens before the reasoning is closed; default: no budget"
    )

    def bind_host(self) -> str:
        """The address to bind: loopback unless keys are set or remote access was allowed."""
        if self.host is not None:
            return self.host
        return ALL_INTERFACES if self.api_keys else LOOPBACK

    def check(self) -> None:
        """Refuse bad values, and an unauthenticated server on a non-loopback address unless
        told otherwise."""
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise ValueError(
                f"reasoning_effort {self.reasoning_effort!r} is not one of {REASONING_EFFORTS}"
            )
        host = self.bind_host()
        if (
            not self.api_keys
            and not self.allow_remote_without_auth
            and host
            not in (
                LOOPBACK,
                "localhost",
                "::1",
            )
        ):
            raise ValueError(
                f"refusing to bind {host} with no API key: set --api-keys (or "
                f"{ENV_PREFIX}API_KEYS), or pass --allow-remote-without-auth"
            )
