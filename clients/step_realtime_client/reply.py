"""One reply as the client saw it: audio, transcript, reasoning, and client-side timings.

Times are `time.monotonic()` on the client. First-packet latency is measured as a user feels
it: arrival of the first audio delta minus the moment the last speech of the question was
sent (the server defines its figure the same way, from the server's side).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from step_realtime_client.audio import WIRE_SAMPLE_RATE
from step_realtime_client.events import (
    AudioDelta,
    ErrorEvent,
    InputCommitted,
    InputTranscriptDelta,
    OutputTextDelta,
    ReasoningDelta,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SpeechStopped,
    TranscriptDelta,
    UsageUpdated,
)

# Gaps shorter than this are scheduling jitter that any audio device buffer absorbs.
UNDERRUN_TOLERANCE_S = 0.005
# GPT-Live does not say how a reply ended; one that ended on its own counts as completed.
LIVE_REPLY_ENDED = "completed"


@dataclass
class Timings:
    speech_end_sent_at: float | None = None  # the question's last speech left the client
    # input_audio_buffer.committed arrived (Realtime only: GPT-Live sends no turn events)
    committed_at: float | None = None
    created_at: float | None = None  # response.created arrived (Realtime only)
    first_reasoning_at: float | None = None
    first_transcript_at: float | None = None
    first_audio_at: float | None = None
    done_at: float | None = None
    audio_arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, samples)

    def since_speech_end(self, moment: float | None) -> float | None:
        if moment is None or self.speech_end_sent_at is None:
            return None
        return moment - self.speech_end_sent_at

    @property
    def first_packet_latency(self) -> float | None:
        """First audio delta arrival minus the end of the question's speech as sent."""
        return self.since_speech_end(self.first_audio_at)

    @property
    def endpoint_delay(self) -> float | None:
        """End of speech as sent -> the server's commit of the turn arrived."""
        return self.since_speech_end(self.committed_at)

    @property
    def server_latency(self) -> float | None:
        """Commit arrived -> first audio arrived."""
        if self.first_audio_at is None or self.committed_at is None:
            return None
        return self.first_audio_at - self.committed_at

    @property
    def response_time(self) -> float | None:
        """End of speech as sent -> response.done arrived."""
        return self.since_speech_end(self.done_at)


@dataclass
class Underrun:
    at_s: float  # seconds into playback (from the first audio) where playback starved
    gap_s: float


def playback_underruns(
    arrivals: list[tuple[float, int]],
    sample_rate: int = WIRE_SAMPLE_RATE,
    prebuffer_s: float = 0.0,
) -> list[Underrun]:
    """Where real-time playback of audio arriving at these times would starve.

    Playback starts `prebuffer_s` after the first chunk arrives and consumes audio at the
    sample rate; a chunk that arrives after everything before it has played is a gap.
    """
    if not arrivals:
        return []
    start = arrivals[0][0] + prebuffer_s
    played_until = start
    gaps: list[Underrun] = []
    for arrived, samples in arrivals:
        if arrived > played_until + UNDERRUN_TOLERANCE_S:
            gaps.append(Underrun(played_until - start, arrived - played_until))
            played_until = arrived
        played_until += samples / sample_rate
    return gaps


@dataclass
class Reply:
    response_id: str = ""
    item_id: str = ""
    status: str = ""  # completed, cancelled, incomplete, failed
    status_details: dict[str, Any] | None = None  # why it is not completed
    transcript: str = ""
    text: str = ""  # a text-only answer
    input_transcript: str = ""  # the question as the server heard it, if it came in time
    reasoning: str = ""
    chunks: list[np.ndarray] = field(default_factory=list, repr=False)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # from the server, if sent
    usage: dict[str, Any] | None = None
    errors: list[ErrorEvent] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    sample_rate: int = WIRE_SAMPLE_RATE

    @property
    def audio(self) -> np.ndarray:
        """The reply's audio, int16 mono."""
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)

    @property
    def audio_seconds(self) -> float:
        return sum(len(chunk) for chunk in self.chunks) / self.sample_rate

    @property
    def answer(self) -> str:
        return self.transcript or self.text

    def underruns(self, prebuffer_s: float = 0.0) -> list[Underrun]:
        return playback_underruns(self.timings.audio_arrivals, self.sample_rate, prebuffer_s)


class ReplyCollector:
    """Feeds on Realtime server events and builds the `Reply` of the next response that
    starts."""

    def __init__(self, speech_end_sent_at: float | None = None) -> None:
        self.reply = Reply()
        self.reply.timings.speech_end_sent_at = speech_end_sent_at
        self.done = False

    def feed(self, event: ServerEvent) -> None:
        now = event.received_at or time.monotonic()
        if isinstance(event, ErrorEvent):
            self.reply.errors.append(event)
        elif isinstance(event, InputTranscriptDelta):
            self.reply.input_transcript += event.delta
        else:
            self._feed_turn(event, now)

    def _feed_turn(self, event: ServerEvent, now: float) -> None:
        reply, timings = self.reply, self.reply.timings
        if isinstance(event, (InputCommitted, SpeechStopped)):
            if timings.committed_at is None and not reply.response_id:
                timings.committed_at = now
        elif isinstance(event, ResponseCreated):
            if not reply.response_id:
                reply.response_id = event.response_id
                timings.created_at = now
        if not reply.response_id or getattr(event, "response_id", None) != reply.response_id:
            return
        if not isinstance(event, ResponseDone):
            self._feed_content(event, now)
        elif _cut_by_more_speech(event):
            self._start_over()
        else:
            reply.status_details = event.status_details
            reply.usage = event.usage
            reply.stage_seconds = event.stage_seconds
            self._finish(event.status, now)

    def _feed_content(self, event: ServerEvent, now: float) -> None:
        """What the reply says: audio, transcript, text, reasoning."""
        reply, timings = self.reply, self.reply.timings
        if isinstance(event, AudioDelta):
            pcm = event.pcm16()
            reply.item_id = event.item_id
            reply.chunks.append(pcm)
            timings.audio_arrivals.append((now, len(pcm)))
            timings.first_audio_at = timings.first_audio_at or now
        elif isinstance(event, ReasoningDelta):
            reply.reasoning += event.delta
            timings.first_reasoning_at = timings.first_reasoning_at or now
        elif isinstance(event, TranscriptDelta):
            reply.item_id = event.item_id
            reply.transcript += event.delta
            timings.first_transcript_at = timings.first_transcript_at or now
        elif isinstance(event, OutputTextDelta):
            reply.text += event.delta
            timings.first_transcript_at = timings.first_transcript_at or now

    def _finish(self, status: str, now: float) -> None:
        self.reply.status = status
        self.reply.timings.done_at = now
        self.done = True

    def _start_over(self) -> None:
        """The question went on after a pause that the server took for its end: the reply is
        the response to the whole question, which comes next."""
        sent_at = self.reply.timings.speech_end_sent_at
        self.reply = Reply(errors=self.reply.errors)
        self.reply.timings.speech_end_sent_at = sent_at


class LiveReplyCollector(ReplyCollector):
    """The same for GPT-Live, which names no responses: the reply is what is said from now on,
    until the usage update that follows it."""

    def _feed_turn(self, event: ServerEvent, now: float) -> None:
        if not isinstance(event, UsageUpdated):
            self._feed_content(event, now)
        elif not (self.reply.chunks or self.reply.transcript):
            return  # a reply withdrawn before it spoke (the user went on): not ours
        elif self._answered_part_of_the_question():
            self._start_over()
        else:
            self._finish(LIVE_REPLY_ENDED, now)

    def _answered_part_of_the_question(self) -> bool:
        """It began before the question's last speech was sent: the server took a pause for
        the turn's end, and the rest of the question cut it (Realtime says so; Live does not)."""
        timings = self.reply.timings
        first = timings.first_audio_at or timings.first_transcript_at
        sent = timings.speech_end_sent_at
        return first is not None and (sent is None or first < sent)


def _cut_by_more_speech(done: ResponseDone) -> bool:
    """A response that the user's own speech cancelled (the server's barge-in)."""
    details = done.status_details or {}
    return done.status == "cancelled" and details.get("reason") == "turn_detected"
