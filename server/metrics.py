"""Prometheus metrics, prefix `realtime_`, named in docs/ARCHITECTURE.md ("Latency and metrics").

First-packet latency (FPL) = time the first `response.output_audio.delta` of a response is
written to the socket minus the arrival of the last audio frame that turn detection classed as
speech. Its parts go to `realtime_stage_seconds{stage,mode}`: `endpoint` (speech end -> turn
committed), `server` (commit -> first audio written), and the responder's own stages, in seconds
from the start of the response's work (encode, prefill, first_reasoning_token,
first_answer_token, first_tts_chunk). `mode` is the reasoning scheduler's mode of the response
(`streaming.scheduler.mode_for_effort`: no_think, speak_first, think_first, think_then_speak).

Speculative starts (docs/ARCHITECTURE.md): `realtime_speculative_starts` counts them,
`realtime_speculations{outcome}` their outcome (used: a hit; discarded), and
`realtime_speculation_wasted_tokens` the tokens decoded for discarded ones. A discarded start
leaves no other trace: no response counted, no latency or stage observed.

Closing and refusing (docs/security.md): `realtime_connections_closed{reason}` counts sessions
the server ended (session_idle_timeout, session_expired, not_reading, server_error), and
`realtime_requests_refused{reason}` requests refused before they reached a session or route
(invalid_api_key, origin_not_allowed, request_too_large, ...). Responses cut by a disconnect
count in `realtime_responses{status="cancelled"}`. `realtime_flushed_bytes` counts the queued
deltas a cancel or barge-in dropped before they were sent (interruption flushes).

Draining (server/drain.py): `realtime_draining` is 1 from SIGTERM or `POST /admin/drain` on; the
sessions the drain closes count in `realtime_connections_closed{reason="server_shutting_down"}`,
the sessions and client secrets it refuses in `realtime_requests_refused{reason=...}` alike.

Each app has its own registry, so that several apps (tests) can live in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

FIRST_AUDIO_BUCKETS = (
    0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.92, 1, 1.25, 1.5, 2, 3, 5, 10,
)  # fmt: skip


class Metrics:
    def __init__(self, capacity: int, target_seconds: float) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.first_audio_latency = Histogram(
            "realtime_first_audio_latency_seconds",
            "Last speech frame arrival to first output audio written",
            ["mode"],
            buckets=FIRST_AUDIO_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "realtime_stage_seconds",
            "Latency of each stage of a response, by reasoning mode",
            ["stage", "mode"],
            buckets=FIRST_AUDIO_BUCKETS,
            registry=r,
        )
        self.first_audio_target = Gauge(
            "realtime_first_audio_latency_target_seconds",
            "First-packet latency target",
            registry=r,
        )
        self.sessions_active = Gauge("realtime_sessions_active", "Sessions open now", registry=r)
        self.sessions_capacity = Gauge(
            "realtime_sessions_capacity", "Most sessions served at once", registry=r
        )
        self.sessions = Counter("realtime_sessions", "Sessions opened", registry=r)
        self.draining = Gauge(
            "realtime_draining",
            "1 while the server drains (SIGTERM or POST /admin/drain): it refuses new sessions",
            registry=r,
        )
        self.sessions_rejected = Counter(
            "realtime_sessions_rejected", "Sessions refused at capacity", registry=r
        )
        self.responses = Counter(
            "realtime_responses", "Responses by final status", ["status"], registry=r
        )
        self.barge_ins = Counter(
            "realtime_barge_ins", "Responses cancelled by user speech", registry=r
        )
        self.speculations = Counter(
            "realtime_speculations",
            "Responses started in a pause before the turn committed, by outcome (used|discarded)",
            ["outcome"],
            registry=r,
        )
        self.speculative_starts = Counter(
            "realtime_speculative_starts",
            "Responses started in a pause inside a turn, before it committed",
            registry=r,
        )
        self.speculation_wasted_tokens = Counter(
            "realtime_speculation_wasted_tokens",
            "Tokens decoded for speculative responses that were discarded",
            registry=r,
        )
        self.protocol_errors = Counter(
            "realtime_protocol_errors", "Error events sent, by code", ["code"], registry=r
        )
        self.audio_in = Counter("realtime_audio_in_seconds", "Input audio received", registry=r)
        self.audio_out = Counter("realtime_audio_out_seconds", "Output audio sent", registry=r)
        self.reasoning_tokens = Counter(
            "realtime_reasoning_tokens", "Reasoning tokens generated", registry=r
        )
        self.answer_tokens = Counter(
            "realtime_answer_tokens", "Answer tokens generated", registry=r
        )
        self.connections_closed = Counter(
            "realtime_connections_closed",
            "Sessions closed by the server, by reason",
            ["reason"],
            registry=r,
        )
        self.flushed_bytes = Counter(
            "realtime_flushed_bytes",
            "Queued delta bytes dropped unsent because their response was cancelled",
            registry=r,
        )
        self.requests_refused = Counter(
            "realtime_requests_refused",
            "Handshakes and HTTP requests refused before a session or route, by reason",
            ["reason"],
            registry=r,
        )
        self.endpoint_delay = Histogram(
            "realtime_endpoint_delay_seconds",
            "Last speech frame arrival to turn committed, by what closed the turn "
            "(server_vad, semantic_vad)",
            ["detector"],
            buckets=FIRST_AUDIO_BUCKETS,
            registry=r,
        )
        self.end_of_turn_seconds = Histogram(
            "realtime_end_of_turn_model_seconds",
            "Time of one end-of-turn model verdict (semantic_vad), queueing included",
            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1),
            registry=r,
        )
        self.premature_commits = Counter(
            "realtime_premature_commits",
            "Turns closed while the user was still speaking: speech resumed within 1 s after "
            "the commit, by detector",
            ["detector"],
            registry=r,
        )
        self.turn_merges = Counter(
            "realtime_turn_merges",
            "Turns closed too early and merged into the speech that followed (the reply begun "
            "for the first part withdrawn), by detector",
            ["detector"],
            registry=r,
        )
        self.merge_heard_seconds = Histogram(
            "realtime_merge_heard_seconds",
            "Audio of a withdrawn reply that could have played before its turn was merged",
            buckets=(0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2),
            registry=r,
        )
        self.transcriptions = Counter(
            "realtime_transcriptions",
            "User audio transcripts by outcome (completed|failed)",
            ["status"],
            registry=r,
        )
        self.transcription_seconds = Histogram(
            "realtime_transcription_seconds",
            "Time to write down one user turn, from its start (after the reply's first audio)",
            buckets=FIRST_AUDIO_BUCKETS,
            registry=r,
        )
        self.sessions_capacity.set(capacity)
        self.first_audio_target.set(target_seconds)
