"""What one connection tells the metrics (server/metrics.py), from the session's outputs and
the moments they reach the client. The connection calls it; it keeps only the counts it has
already reported, so that it adds what grew."""

from __future__ import annotations

from typing import Any

from server.metrics import Metrics
from server.protocol import CancelResponse, SessionMachine, StartResponse, TurnsMerged
from streaming.responder import ResponseFinished
from streaming.scheduler import mode_for_effort


def mode_of(action: StartResponse) -> str:
    """The `mode` label: the reasoning scheduler's mode for the response's effort."""
    return mode_for_effort(action.request.reasoning_effort)


class ConnectionObserver:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._audio_in_ms = 0.0
        self._audio_out_ms = 0.0
        self._premature_commits = 0

    def queued(self, event: dict[str, Any]) -> None:
        """A Realtime event went into the outbox."""
        type_ = event["type"]
        if type_ == "response.done":
            self.metrics.responses.labels(event["response"]["status"]).inc()
        elif type_ == "error":
            self.metrics.protocol_errors.labels(event["error"]["code"]).inc()

    def started(self, action: StartResponse) -> None:
        if action.speculative:
            self.metrics.speculative_starts.inc()

    def confirmed(self) -> None:
        self.metrics.speculations.labels("used").inc()

    def cancelled(self, action: CancelResponse, tokens: int, flushed_bytes: int) -> None:
        self.metrics.flushed_bytes.inc(flushed_bytes)  # interruption flushes what was not sent
        if action.reason == "turn_detected":
            self.metrics.barge_ins.inc()
        elif action.reason == "speculation_discarded":
            self.metrics.speculations.labels("discarded").inc()
            self.metrics.speculation_wasted_tokens.inc(tokens)

    def merged(self, action: TurnsMerged) -> None:
        self.metrics.turn_merges.labels(action.detector).inc()
        self.metrics.merge_heard_seconds.observe(action.heard_ms / 1000)

    def first_audio(self, action: StartResponse, written_at: float) -> None:
        """The response's first audio was written at `written_at` (monotonic seconds)."""
        mode = mode_of(action)
        if action.committed_at is not None:
            self.metrics.stage.labels("server", mode).observe(written_at - action.committed_at)
        if action.speech_end_at is None:
            return  # no VAD turn: first-packet latency is defined from the end of speech
        self.metrics.first_audio_latency.labels(mode).observe(written_at - action.speech_end_at)
        if action.committed_at is not None:
            endpoint = action.committed_at - action.speech_end_at
            self.metrics.stage.labels("endpoint", mode).observe(endpoint)
            self.metrics.endpoint_delay.labels(action.detector).observe(endpoint)

    def finished(self, action: StartResponse, event: ResponseFinished) -> None:
        """The response's `response.done` was written: its stage timings and tokens."""
        mode = mode_of(action)
        for stage, seconds in event.stage_seconds.items():
            self.metrics.stage.labels(stage, mode).observe(seconds)
        self.metrics.reasoning_tokens.inc(event.reasoning_tokens)
        self.metrics.answer_tokens.inc(event.answer_tokens)

    def disconnected(self, unfinished: int) -> None:
        """Responses cut by the disconnect: the client never got their `response.done`."""
        self.metrics.responses.labels("cancelled").inc(unfinished)

    def session_grew(self, session: SessionMachine) -> float:
        """Count what the session's counters added since the last call; returns the seconds of
        output audio added (the client plays them: the session is not idle until they have)."""
        premature = session.turns.stats.premature_commits
        if premature > self._premature_commits:
            detection = session.config.turn_detection
            detector = detection.type if detection is not None else "client"
            self.metrics.premature_commits.labels(detector).inc(premature - self._premature_commits)
            self._premature_commits = premature
        stats = session.stats
        if stats.audio_in_ms > self._audio_in_ms:
            self.metrics.audio_in.inc((stats.audio_in_ms - self._audio_in_ms) / 1000)
            self._audio_in_ms = stats.audio_in_ms
        added_s = 0.0
        if stats.audio_out_ms > self._audio_out_ms:
            added_s = (stats.audio_out_ms - self._audio_out_ms) / 1000
            self.metrics.audio_out.inc(added_s)
            self._audio_out_ms = stats.audio_out_ms
        return added_s
