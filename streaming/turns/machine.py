"""Turn-taking as a state machine with no I/O: audio and verdicts in, turn events out.

Rules of the design (h11's `_state.py` is the model):
- The state is one `TurnState`; it changes only through `TRANSITIONS`, a table of
  (state, cue) -> state. A cue that the table does not allow in the current state is a bug and
  raises `TurnTakingError`; frames that change nothing raise no cue at all.
- Time is the audio clock: milliseconds of input audio appended since the session began, as the
  Realtime events report them. Wall time never enters; the caller timestamps what it needs.
- Every method returns the events it caused, in order. The machine never starts, cancels or
  runs anything: a speculative start (`Speculate`), work ahead on a long turn (`Prepare`) and
  the end-of-turn model (`AskEndOfTurn`, answered through `verdict`) are the caller's to act on.

States:
    MANUAL     turn detection is off; the client commits
    LISTENING  no speech in progress (silence, noise)
    SPEAKING   speech, the newest frame voiced
    PAUSED     silence after speech, the turn not yet judged
    JUDGING    semantic_vad: the end-of-turn model was asked, its verdict is pending
    HOLDING    semantic_vad: the model said "not yet"; waiting for speech, a re-check or the cap
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streaming.turns.buffer import SAMPLES_PER_MS, AudioBuffer
from streaming.turns.detection import SemanticVad, ServerVad, TurnDetection
from streaming.turns.vad import SpeechClassifier, make_classifier

# A long turn is worked on ahead every this much speech: the audio encoder's 25 s chunk
# (streaming.model.frontend.CHUNK_SECONDS), each finished one encodable while the user speaks.
PREPARE_EVERY_MS = 25_000
# Speech that starts this soon after a commit means the commit cut the user off.
PREMATURE_COMMIT_WINDOW_MS = 1000


def whole_frames_ms(ms: float, frame_ms: float) -> float:
    """`ms` rounded up to whole frames: the silence counted when a pause of `ms` is recognised
    (with 30 ms webrtcvad frames the 500 ms window closes after 510 ms, a 60 ms speculation
    trigger fires at 60)."""
    return -(-ms // frame_ms) * frame_ms


class TurnState(enum.Enum):
    MANUAL = "manual"
    LISTENING = "listening"
    SPEAKING = "speaking"
    PAUSED = "paused"
    JUDGING = "judging"
    HOLDING = "holding"


class Cue(enum.Enum):
    ONSET = "onset"  # enough voiced frames to call it speech
    PAUSE = "pause"  # the first unvoiced frame after speech
    RESUME = "resume"  # a voiced frame in a pause
    SILENCE_WINDOW = "silence_window"  # server_vad: silence_duration_ms reached
    ASK = "ask"  # semantic_vad: time to ask the end-of-turn model
    COMPLETE = "complete"  # its verdict: the utterance is complete
    INCOMPLETE = "incomplete"  # its verdict: not yet
    MAX_SILENCE = "max_silence"  # semantic_vad: the eagerness cap on silence
    IDLE = "idle"  # server_vad: idle_timeout_ms of input without speech
    COMMIT = "commit"  # the client committed the buffer
    CLEAR = "clear"  # the client cleared the buffer


S, C = TurnState, Cue
_IN_PAUSE = (S.PAUSED, S.JUDGING, S.HOLDING)
_DETECTING = (S.LISTENING, S.SPEAKING, *_IN_PAUSE)
TRANSITIONS: dict[tuple[TurnState, Cue], TurnState] = {
    (S.LISTENING, C.ONSET): S.SPEAKING,
    (S.LISTENING, C.IDLE): S.LISTENING,
    (S.SPEAKING, C.PAUSE): S.PAUSED,
    (S.PAUSED, C.SILENCE_WINDOW): S.LISTENING,
    (S.PAUSED, C.ASK): S.JUDGING,
    (S.HOLDING, C.ASK): S.JUDGING,
    (S.JUDGING, C.COMPLETE): S.LISTENING,
    (S.JUDGING, C.INCOMPLETE): S.HOLDING,
    **{(state, C.RESUME): S.SPEAKING for state in _IN_PAUSE},
    **{(state, C.MAX_SILENCE): S.LISTENING for state in (S.JUDGING, S.HOLDING)},
    **{(state, C.COMMIT): S.LISTENING for state in _DETECTING},
    **{(state, C.CLEAR): S.LISTENING for state in _DETECTING},
    (S.MANUAL, C.COMMIT): S.MANUAL,
    (S.MANUAL, C.CLEAR): S.MANUAL,
}


class TurnTakingError(RuntimeError):
    """A cue the transition table does not allow: a bug in the machine, never bad input."""


# --- events out ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted:
    item_id: str  # the id the committed turn will have
    audio_start_ms: int  # the first voiced frame of the onset minus prefix padding
    # The turn closed too early: speech came back within the merge window after `merges` was
    # committed, so this turn takes that one's audio in front of its own (and starts where it
    # started). The caller undoes what it did with `merges`.
    merges: str | None = None


@dataclass(frozen=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int  # where the turn was closed: includes the silence waited through


@dataclass(frozen=True)
class TurnCommitted:
    """A turn to add to the conversation. `by` says what closed it: the detector's type,
    "idle", or "client" (an explicit commit)."""

    item_id: str
    audio: np.ndarray  # 16 kHz int16
    by: str
    previous_end_ms: int  # audio clock where it was closed


@dataclass(frozen=True)
class Speculate:
    """A pause long enough to start answering the turn so far, before it is closed."""

    item_id: str
    audio: np.ndarray


@dataclass(frozen=True)
class Resumed:
    """Speech came back after a `Speculate` of the same pause: that guess is void."""

    item_id: str


@dataclass(frozen=True)
class Prepare:
    """Another `PREPARE_EVERY_MS` of a turn still being spoken: work ahead on it."""

    item_id: str
    audio: np.ndarray


@dataclass(frozen=True)
class AskEndOfTurn:
    """Run the end-of-turn model on `audio` (the turn so far) and call `verdict(request_id,
    probability)`; a verdict that comes after speech resumed is ignored."""

    request_id: int
    audio: np.ndarray


@dataclass(frozen=True)
class IdleTimeout:
    item_id: str
    audio_start_ms: int
    audio_end_ms: int


TurnEvent = (
    SpeechStarted
    | SpeechStopped
    | TurnCommitted
    | Speculate
    | Resumed
    | Prepare
    | AskEndOfTurn
    | IdleTimeout
)


@dataclass
class TurnStats:
    premature_commits: int = 0  # speech within PREMATURE_COMMIT_WINDOW_MS after a VAD commit
    merges: int = 0  # turns taken back into the next one (`SpeechStarted.merges`)
    end_of_turn_asks: int = 0


@dataclass(frozen=True)
class _Closed:
    """The last turn a detector closed, while the next onset may still merge it."""

    item_id: str
    audio: np.ndarray
    start_ms: int
    end_ms: int


@dataclass
class _Pause:
    """The silence since the last voiced frame of a turn."""

    silent_ms: float = 0.0
    speculated: bool = False
    next_check_ms: float = 0.0  # semantic_vad: silence at which the model is asked (again)
    request_id: int | None = None  # the pending AskEndOfTurn


@dataclass
class _Onset:
    frames: deque[tuple[int, bool]] = field(default_factory=deque)  # (frame start ms, voiced)


class TurnTaking:
    """One session's turn-taking. Feed 16 kHz int16 audio in any chunk sizes."""

    def __init__(
        self,
        detection: TurnDetection | None,
        new_item_id: Callable[[], str],
        *,
        vad: str = "webrtc",
        speculate_after_ms: int | None = None,
        prepare_every_ms: int | None = PREPARE_EVERY_MS,
    ) -> None:
        self._new_item_id = new_item_id
        self.vad_kind = vad
        self.speculate_after_ms = speculate_after_ms
        self.prepare_every_ms = prepare_every_ms
        self.buffer = AudioBuffer()
        self.stats = TurnStats()
        self.item_id = new_item_id()  # the id the next committed turn gets
        self.voiced_in_last_feed = False  # a voiced frame of a turn was in the last `append`
        self._events: list[TurnEvent] = []
        self._requests = 0
        self._last_commit_ms: int | None = None
        self._idle_since_ms: float | None = None
        self._mergeable: _Closed | None = None
        self.configure(detection)

    # --- inputs --------------------------------------------------------------------------

    def configure(self, detection: TurnDetection | None) -> None:
        """New settings: detection starts afresh on the audio that comes next; the buffer and
        the clock are kept."""
        self.detection = detection
        self.state = TurnState.MANUAL if detection is None else TurnState.LISTENING
        self._classifier: SpeechClassifier | None = None
        if detection is not None:
            self._classifier = make_classifier(self.vad_kind, detection.threshold)
        self._pending = np.zeros(0, np.int16)  # samples short of a whole frame
        self._frame_clock_ms = self.buffer.clock_ms  # end of the last classified frame
        self._onset = _Onset(deque(maxlen=self._classifier.onset_window if self._classifier else 1))
        self._pause = _Pause()
        self._speech_start_ms = 0
        self._turn_head = np.zeros(0, np.int16)  # a merged turn's audio, before the buffer's
        self._turn_start_ms = 0  # where the turn began (before `_speech_start_ms` if merged)
        self._prepared_parts = 0
        self._mergeable = None

    def append(self, pcm: np.ndarray) -> list[TurnEvent]:
        self.buffer.append(pcm)
        self.voiced_in_last_feed = False
        if self._classifier is None:
            return self._drain()
        samples = np.concatenate([self._pending, pcm.astype(np.int16)])
        size = self._classifier.frame_samples
        n_frames = len(samples) // size
        self._pending = samples[n_frames * size :]
        for i in range(n_frames):
            self._frame(samples[i * size : (i + 1) * size])
        self._expire_merge()
        if self.state == TurnState.LISTENING:
            self._check_idle()
            self._trim()
        else:
            self._prepare_ahead()
        return self._drain()

    def commit(self) -> list[TurnEvent]:
        """The client's `input_audio_buffer.commit` (the caller checks it is not empty)."""
        self._cue(Cue.COMMIT)
        self._commit(self.buffer.start, self.buffer.end, "client")
        self.configure(self.detection)
        return self._drain()

    def clear(self) -> list[TurnEvent]:
        self._cue(Cue.CLEAR)
        self.buffer.clear()
        self.configure(self.detection)
        return self._drain()

    def verdict(self, request_id: int, probability: float) -> list[TurnEvent]:
        """The end-of-turn model's answer to `AskEndOfTurn(request_id)`."""
        detection = self.detection
        if (
            self.state != TurnState.JUDGING
            or self._pause.request_id != request_id
            or not isinstance(detection, SemanticVad)
        ):
            return []  # speech resumed, or the settings changed, since it was asked
        self._pause.request_id = None
        policy = detection.policy
        if probability >= policy.complete_probability:
            self._cue(Cue.COMPLETE)
            self._close_turn("semantic_vad")
        else:
            self._cue(Cue.INCOMPLETE)
            self._pause.next_check_ms = self._pause.silent_ms + policy.recheck_every_ms
        return self._drain()

    def seal(self) -> None:
        """The last closed turn stands: speech from now on is a turn of its own (the caller's
        reply to it was heard, or the conversation moved on)."""
        self._mergeable = None

    def response_done(self, played_until_ms: float) -> None:
        """A response ended; its audio plays until `played_until_ms` on the audio clock, after
        which `idle_timeout_ms` starts counting input without speech."""
        self._idle_since_ms = max(self.buffer.clock_ms, played_until_ms)

    def response_started(self) -> None:
        self._idle_since_ms = None

    # --- frames --------------------------------------------------------------------------

    def _frame(self, frame: np.ndarray) -> None:
        assert self._classifier is not None
        voiced = self._classifier.is_speech(frame)
        start = int(self._frame_clock_ms)
        self._frame_clock_ms += self._classifier.frame_ms
        if self.state == TurnState.LISTENING:
            self._listening_frame(start, voiced)
        elif self.state == TurnState.SPEAKING:
            if voiced:
                self.voiced_in_last_feed = True
            else:
                self._cue(Cue.PAUSE)
                self._pause = _Pause(next_check_ms=self._first_check_ms())
                self._silent_frame()
        elif voiced:
            self._resume()
        else:
            self._silent_frame()

    def _listening_frame(self, start: int, voiced: bool) -> None:
        assert self._classifier is not None and self.detection is not None
        self._onset.frames.append((start, voiced))
        if not voiced or sum(v for _, v in self._onset.frames) < self._classifier.onset_needed:
            return
        self._cue(Cue.ONSET)
        self.voiced_in_last_feed = True
        self._idle_since_ms = None
        self._prepared_parts = 0
        onset = next(begin for begin, v in self._onset.frames if v)
        self._onset.frames.clear()
        if self._last_commit_ms is not None and onset - self._last_commit_ms < (
            PREMATURE_COMMIT_WINDOW_MS
        ):
            self.stats.premature_commits += 1
        self._last_commit_ms = None
        merged = self._mergeable
        self._mergeable = None
        if merged is not None and onset - merged.end_ms < self._merge_window_ms():
            # The pause was inside the utterance: the audio since the commit (kept untrimmed
            # while the window was open) joins the closed turn's.
            self.stats.merges += 1
            self._turn_head = merged.audio
            self._speech_start_ms = merged.end_ms
            self._turn_start_ms = merged.start_ms
            self._events.append(SpeechStarted(self.item_id, merged.start_ms, merged.item_id))
            return
        self._speech_start_ms = max(0, onset - self.detection.prefix_padding_ms)
        self._turn_start_ms = self._speech_start_ms
        self._events.append(SpeechStarted(self.item_id, self._speech_start_ms))

    def _resume(self) -> None:
        self._cue(Cue.RESUME)
        self.voiced_in_last_feed = True
        if self._pause.speculated:
            self._events.append(Resumed(self.item_id))
        self._pause = _Pause()

    def _silent_frame(self) -> None:
        assert self._classifier is not None
        pause = self._pause
        pause.silent_ms += self._classifier.frame_ms
        trigger = self.speculate_after_ms
        if trigger is not None and not pause.speculated and pause.silent_ms >= trigger:
            pause.speculated = True
            self._events.append(Speculate(self.item_id, self._turn_audio()))
        detection = self.detection
        if isinstance(detection, ServerVad):
            if pause.silent_ms >= detection.silence_duration_ms:
                self._cue(Cue.SILENCE_WINDOW)
                self._close_turn("server_vad")
            return
        assert isinstance(detection, SemanticVad)
        if pause.silent_ms >= detection.policy.max_silence_ms:
            self._cue(Cue.MAX_SILENCE)
            self._close_turn("semantic_vad")
        elif self.state != TurnState.JUDGING and pause.silent_ms >= pause.next_check_ms:
            self._cue(Cue.ASK)
            self._requests += 1
            pause.request_id = self._requests
            self.stats.end_of_turn_asks += 1
            self._events.append(AskEndOfTurn(self._requests, self._turn_audio()))

    def _first_check_ms(self) -> float:
        detection = self.detection
        return detection.policy.first_check_ms if isinstance(detection, SemanticVad) else 0.0

    # --- turns ---------------------------------------------------------------------------

    def _close_turn(self, by: str) -> None:
        """The detector ended the turn at the end of the last frame."""
        end_ms = int(self._frame_clock_ms)
        self._events.append(SpeechStopped(self.item_id, end_ms))
        begin = self._speech_start_ms * SAMPLES_PER_MS
        stop = int(self._frame_clock_ms * SAMPLES_PER_MS)
        item_id = self.item_id
        audio = self._commit(begin, stop, by)
        if self._merge_window_ms() > 0:
            self._mergeable = _Closed(item_id, audio, self._turn_start_ms, end_ms)
        self._last_commit_ms = end_ms
        self._pause = _Pause()

    def _commit(self, begin: int, stop: int, by: str) -> np.ndarray:
        audio = self.buffer.slice(begin, stop)
        if len(self._turn_head):
            audio = np.concatenate([self._turn_head, audio])
            self._turn_head = np.zeros(0, np.int16)
        self.buffer.drop_before(stop)
        self._events.append(TurnCommitted(self.item_id, audio, by, stop // SAMPLES_PER_MS))
        self.item_id = self._new_item_id()
        return audio

    def _turn_audio(self) -> np.ndarray:
        audio = self.buffer.slice(self._speech_start_ms * SAMPLES_PER_MS, self.buffer.end)
        return np.concatenate([self._turn_head, audio]) if len(self._turn_head) else audio

    def _merge_window_ms(self) -> int:
        return self.detection.merge_window_ms if self.detection is not None else 0

    def _expire_merge(self) -> None:
        """The merge window ends on the audio clock: later speech is a turn of its own."""
        merged = self._mergeable
        if merged is not None and self._frame_clock_ms - merged.end_ms >= self._merge_window_ms():
            self._mergeable = None

    def _prepare_ahead(self) -> None:
        if self.prepare_every_ms is None:
            return
        turn_ms = self.buffer.clock_ms - self._turn_start_ms
        parts = int(turn_ms // self.prepare_every_ms)
        if parts > self._prepared_parts:
            self._prepared_parts = parts
            self._events.append(Prepare(self.item_id, self._turn_audio()))

    def _check_idle(self) -> None:
        """`idle_timeout_ms` (server_vad only) on the audio clock: counted from the end of the
        last response's audio, over input without speech. A client that stops streaming stops
        this clock (OpenAI's runs on wall time; the connection has a wall-clock limit)."""
        detection = self.detection
        since = self._idle_since_ms
        if not isinstance(detection, ServerVad) or detection.idle_timeout_ms is None:
            return
        clock_ms = self.buffer.clock_ms
        if since is None or clock_ms - since < detection.idle_timeout_ms:
            return
        self._cue(Cue.IDLE)
        self._idle_since_ms = None
        self._events.append(IdleTimeout(self.item_id, int(since), int(clock_ms)))
        self._commit(self.buffer.start, self.buffer.end, "idle")

    def _trim(self) -> None:
        """Keep only what a coming onset may reach back to."""
        assert self._classifier is not None and self.detection is not None
        frames = self._classifier.onset_window + 1
        keep_ms = self.detection.prefix_padding_ms + frames * self._classifier.frame_ms
        keep_from = self.buffer.end - int(keep_ms * SAMPLES_PER_MS)
        if self._mergeable is not None:  # a merge takes everything since that commit
            keep_from = min(keep_from, self._mergeable.end_ms * SAMPLES_PER_MS)
        self.buffer.drop_before(keep_from)

    # --- plumbing ------------------------------------------------------------------------

    def _cue(self, cue: Cue) -> None:
        after = TRANSITIONS.get((self.state, cue))
        if after is None:
            raise TurnTakingError(f"cue {cue.value!r} is not allowed in state {self.state.value!r}")
        self.state = after

    def _drain(self) -> list[TurnEvent]:
        events, self._events = self._events, []
        return events
