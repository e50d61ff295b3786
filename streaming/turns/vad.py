"""Speech classifiers for turn detection: one frame of 16 kHz int16 audio in, speech or not out.

Two implementations behind one interface, chosen by name (`make_classifier`), both built from
OpenAI's `server_vad.threshold` (0..1, default 0.5), whose meaning holds on both:

- `silero`: Silero VAD v5 (MIT), the ONNX model that ships inside the `silero-vad` wheel, run
  with onnxruntime. A frame is 512 samples (32 ms); the model also sees the 64 samples before
  the frame and carries a recurrent state from frame to frame. `probability` is the model's
  speech probability and `threshold` is the probability a frame needs to count as speech:
  exactly OpenAI's definition of the threshold.
- `webrtc`: webrtcvad (frames of 480 samples, 30 ms), whose verdict is binary, so the threshold
  maps onto its two knobs, both stricter as it rises (the mapping the server has always used):
  aggressiveness = min(3, floor(4 * threshold)), and a speech onset needs
  ceil((0.3 + 0.6 * threshold) * 10) speech frames out of the last 10 (6 of 10 at 0.5).

The caller (the turn-taking machine) counts the onset over the last `onset_window` frames and
the silence that ends a turn frame by frame; a classifier only labels frames. Create one per
session: a Silero classifier shares one onnxruntime session per process with every other and
holds only its own 64-sample context and recurrent state (a few kB), so creating one costs
microseconds. What a frame costs to classify is measured by `python -m benchmarks.vad`.
"""

from __future__ import annotations

import abc
import functools
import importlib.util
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import webrtcvad

from streaming.model import SAMPLE_RATE  # the served model's rate, which both classifiers take
from streaming.turns.buffer import SAMPLES_PER_MS

if TYPE_CHECKING:
    import onnxruntime

VAD_KINDS = ("webrtc", "silero")
DEFAULT_THRESHOLD = 0.5  # OpenAI's server_vad default

# webrtcvad accepts 10, 20 or 30 ms frames; 30 ms is its most reliable.
WEBRTC_FRAME_SAMPLES = 480
WEBRTC_ONSET_WINDOW = 10  # frames (300 ms), as the server's onset rule has always been
WEBRTC_MAX_AGGRESSIVENESS = 3

# Silero VAD v5 at 16 kHz takes exactly 512 new samples per call, after 64 of context.
SILERO_FRAME_SAMPLES = 512
SILERO_CONTEXT_SAMPLES = 64
SILERO_STATE_SHAPE = (2, 1, 128)  # the model's recurrent state (batch of one)
# Onset rule for Silero: two speech frames in a row (64 ms). Its probability is smoothed by the
# recurrent state, so it needs no 300 ms window as webrtcvad does: `python -m benchmarks.vad`
# found no false onset on white, pink or impulsive noise even for a single frame, and the
# same false onsets on babble and on the server's voice for every rule from 1 of 1 to 5 of 8,
# while the onset delay grows with the window (1/1: 63 ms, 2/2: 97, 3 of 4: 130, 5 of 8: 196
# at threshold 0.5). Two frames keep a margin against one-frame transients it did not test.
SILERO_ONSET_WINDOW = 2
SILERO_ONSET_NEEDED = 2
SILERO_PACKAGE = "silero_vad"
SILERO_MODEL_FILE = "data/silero_vad.onnx"  # opset 16, the file silero's own ONNX loader uses
SILERO_REQUIREMENT = "silero-vad>=6.2.3,<7"  # as pyproject.toml declares it
# One thread per call: every session classifies its own frames and the cores are shared with
# the model; intra-op parallelism on a 2 ms-sized graph would only add scheduling overhead.
SILERO_THREADS = 1


class SpeechClassifier(abc.ABC):
    """Labels frames of 16 kHz mono int16 audio, `frame_samples` long, as speech or not."""

    frame_samples: int  # 16 kHz int16 samples per frame
    onset_window: int  # frames looked at for a speech onset ...
    onset_needed: int  # ... of which this many must be speech

    def __init__(self, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(
                f"turn_detection.threshold must be between 0.0 and 1.0, got {threshold}"
            )
        self.threshold = float(threshold)

    @property
    def frame_ms(self) -> float:
        return self.frame_samples / SAMPLES_PER_MS

    @abc.abstractmethod
    def probability(self, frame: np.ndarray) -> float:
        """The probability (0..1) that this frame is speech; it advances recurrent state, so
        call it once per frame, in order."""

    def is_speech(self, frame: np.ndarray) -> bool:
        """Whether this frame is speech at the classifier's threshold (advances state)."""
        return self.probability(frame) >= self.threshold

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget recurrent state (a new turn-detection configuration, or a cleared buffer)."""

    def _checked(self, frame: np.ndarray) -> np.ndarray:
        if frame.dtype != np.int16 or frame.shape != (self.frame_samples,):
            raise ValueError(
                f"a {type(self).__name__} frame is {self.frame_samples} int16 samples of 16 kHz "
                f"mono audio, got dtype {frame.dtype} and shape {frame.shape}"
            )
        return frame


class WebrtcClassifier(SpeechClassifier):
    """webrtcvad, its aggressiveness and onset rule mapped from the threshold."""

    frame_samples = WEBRTC_FRAME_SAMPLES
    onset_window = WEBRTC_ONSET_WINDOW

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        super().__init__(threshold)
        self.aggressiveness = min(WEBRTC_MAX_AGGRESSIVENESS, math.floor(self.threshold * 4))
        self.onset_needed = math.ceil((0.3 + 0.6 * self.threshold) * self.onset_window)
        self._vad = webrtcvad.Vad(self.aggressiveness)

    def probability(self, frame: np.ndarray) -> float:
        """1.0 for a frame webrtcvad calls speech, else 0.0."""
        return 1.0 if self.is_speech(frame) else 0.0

    def is_speech(self, frame: np.ndarray) -> bool:
        """webrtcvad's own verdict at the mapped aggressiveness (the threshold acts through it,
        not as a cut on the 0/1 `probability`)."""
        return bool(self._vad.is_speech(self._checked(frame).tobytes(), SAMPLE_RATE))

    def reset(self) -> None:
        # webrtcvad adapts its noise model and smooths its verdicts over past frames; a new
        # instance is the only way to clear that, and costs about a microsecond.
        self._vad = webrtcvad.Vad(self.aggressiveness)


class SileroClassifier(SpeechClassifier):
    """Silero VAD v5 on onnxruntime: the speech probability of each 32 ms frame."""

    frame_samples = SILERO_FRAME_SAMPLES
    onset_window = SILERO_ONSET_WINDOW
    onset_needed = SILERO_ONSET_NEEDED

    def __init__(
        self, threshold: float = DEFAULT_THRESHOLD, model_path: Path | None = None
    ) -> None:
        super().__init__(threshold)
        self._session = _silero_session(str(model_path or silero_model_path()))
        self._sample_rate = np.array(SAMPLE_RATE, dtype=np.int64)
        self._state: np.ndarray = np.zeros(SILERO_STATE_SHAPE, dtype=np.float32)
        self._context: np.ndarray = np.zeros(SILERO_CONTEXT_SAMPLES, dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        samples = self._checked(frame).astype(np.float32) / 32768.0
        window = np.concatenate([self._context, samples])[np.newaxis, :]
        speech, self._state = self._session.run(
            None, {"input": window, "state": self._state, "sr": self._sample_rate}
        )
        self._context = samples[-SILERO_CONTEXT_SAMPLES:]
        return float(speech[0, 0])

    def reset(self) -> None:
        self._state = np.zeros(SILERO_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(SILERO_CONTEXT_SAMPLES, dtype=np.float32)


def silero_model_path() -> Path:
    """The Silero VAD ONNX file inside the installed `silero-vad` wheel.

    Found without importing the package: its `__init__` imports torch and sets torch's thread
    count for the whole process.
    """
    spec = importlib.util.find_spec(SILERO_PACKAGE)
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(next(iter(locations))) / SILERO_MODEL_FILE if locations else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"the silero VAD (--vad silero, the default) needs the model file "
            f"{SILERO_MODEL_FILE} of the silero-vad package, a dependency of step-realtime "
            f"that is missing or incomplete here: pip install '{SILERO_REQUIREMENT}'"
        )
    return path


@functools.cache
def _silero_session(model_path: str) -> onnxruntime.InferenceSession:
    """One inference session per process, shared by every classifier (onnxruntime's `run` is
    safe to call from several threads; each classifier passes its own state)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = SILERO_THREADS
    options.inter_op_num_threads = SILERO_THREADS
    return onnxruntime.InferenceSession(
        model_path, sess_options=options, providers=["CPUExecutionProvider"]
    )


def make_classifier(kind: str, threshold: float = DEFAULT_THRESHOLD) -> SpeechClassifier:
    """A new classifier of `kind` ("webrtc" or "silero") at OpenAI's `threshold` (0..1)."""
    if kind == "webrtc":
        return WebrtcClassifier(threshold)
    if kind == "silero":
        return SileroClassifier(threshold)
    raise ValueError(f"unknown VAD kind {kind!r}: use one of {', '.join(VAD_KINDS)}")
