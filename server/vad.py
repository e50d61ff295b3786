"""Turn detection: OpenAI's `server_vad` semantics on webrtcvad. Pure logic: samples in, events out.

Audio is 16 kHz int16, classified in 30 ms frames. Times are milliseconds on the session's audio
clock (all audio appended so far), as the Realtime events report them.

`threshold` (0..1, default 0.5) maps onto two knobs, both stricter as it rises:
- webrtcvad aggressiveness = min(3, floor(threshold * 4)): 0-0.24 -> 0, 0.25-0.49 -> 1,
  0.5-0.74 -> 2, 0.75-1 -> 3;
- speech starts when at least `0.3 + 0.6 * threshold` of the last 10 frames (300 ms) are voiced
  (0.5 -> 6 of 10) and the newest frame is voiced.
Speech stops after `silence_duration_ms` of unvoiced frames in a row. `speech_started` reports
`audio_start_ms` = first voiced frame of the onset minus `prefix_padding_ms` (the audio the
model gets starts there); `speech_stopped` reports `audio_end_ms` = the end of the frame that
completed the silence window (so it includes the silence, as OpenAI's does).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from server.audio import MODEL_SAMPLE_RATE

FRAME_MS = 30  # webrtcvad accepts 10, 20 or 30 ms; 30 is the most reliable
FRAME_SAMPLES = MODEL_SAMPLE_RATE * FRAME_MS // 1000
START_WINDOW_FRAMES = 10  # the onset decision looks at the last 300 ms


@dataclass(frozen=True)
class ServerVad:
    """`turn_detection: {"type": "server_vad", ...}` with OpenAI's defaults."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None


def whole_frames_ms(ms: int) -> int:
    """`ms` rounded up to whole frames: the silence counted when a pause of `ms` is recognised
    (the 500 ms window closes after 510 ms, a 60 ms speculation trigger fires at 60)."""
    return -(-ms // FRAME_MS) * FRAME_MS


def aggressiveness(threshold: float) -> int:
    return min(3, math.floor(threshold * 4))


def start_ratio(threshold: float) -> float:
    return 0.3 + 0.6 * threshold


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int  # includes prefix padding


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int  # includes the silence window
    last_voiced_ms: int  # end of the last voiced frame


VadEvent = SpeechStarted | SpeechStopped


class TurnDetector:
    """Feed 16 kHz int16 audio in any chunk sizes; get speech start/stop events."""

    def __init__(self, config: ServerVad, start_ms: int = 0) -> None:
        self.config = config
        self._vad = webrtcvad.Vad(aggressiveness(config.threshold))
        self._needed = math.ceil(start_ratio(config.threshold) * START_WINDOW_FRAMES)
        self._pending = np.zeros(0, np.int16)  # samples short of a whole frame
        self._clock_ms = start_ms  # end of the last classified frame
        self._window: deque[tuple[int, bool]] = deque(maxlen=START_WINDOW_FRAMES)
        self.silent_ms = 0
        self.in_speech = False
        self.last_voiced_ms: int | None = None  # end of the newest voiced frame while in speech
        self.voiced_in_last_feed = False  # the last `feed` held a voiced frame during speech

    def feed(self, pcm: np.ndarray) -> list[VadEvent]:
        samples = np.concatenate([self._pending, pcm.astype(np.int16)])
        n_frames = len(samples) // FRAME_SAMPLES
        self._pending = samples[n_frames * FRAME_SAMPLES :]
        self.voiced_in_last_feed = False
        events: list[VadEvent] = []
        for i in range(n_frames):
            frame = samples[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            voiced = self._vad.is_speech(frame.tobytes(), MODEL_SAMPLE_RATE)
            event = self._step(voiced)
            if event is not None:
                events.append(event)
        return events

    def _step(self, voiced: bool) -> VadEvent | None:
        frame_start = self._clock_ms
        self._clock_ms += FRAME_MS
        self._window.append((frame_start, voiced))
        if not self.in_speech:
            if voiced and sum(v for _, v in self._window) >= self._needed:
                self.in_speech = True
                self.silent_ms = 0
                self.last_voiced_ms = self._clock_ms
                self.voiced_in_last_feed = True
                onset = next(start for start, v in self._window if v)
                return SpeechStarted(max(0, onset - self.config.prefix_padding_ms))
            return None
        if voiced:
            self.silent_ms = 0
            self.last_voiced_ms = self._clock_ms
            self.voiced_in_last_feed = True
            return None
        self.silent_ms += FRAME_MS
        if self.silent_ms >= self.config.silence_duration_ms:
            self.in_speech = False
            self._window.clear()
            assert self.last_voiced_ms is not None
            return SpeechStopped(self._clock_ms, self.last_voiced_ms)
        return None
