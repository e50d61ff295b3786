"""Semantic end of turn: Smart Turn v3.2 says whether the user has finished speaking.

Smart Turn (pipecat's audio end-of-turn model, BSD-2) is a Whisper-encoder classifier over the
last 8 s of 16 kHz audio: it hears intonation and phrasing ("what is seventeen ..." is not
finished, "what is seventeen minus eight" is) and returns the probability that the turn is
complete. Its CPU ONNX file ships inside the `pipecat-ai` wheel (the `semantic` extra); we run
it with onnxruntime and never import pipecat itself (its imports would load much more than the
model needs).

Input, as pipecat's own `LocalSmartTurnAnalyzerV3` prepares it: the turn as float32 in [-1, 1],
its last 8 s kept, zero-padded at the front to exactly 8 s, then Whisper's log-mel features
(80 mel bins, 800 frames of 10 ms) with the waveform normalised to zero mean and unit variance
first (`transformers.WhisperFeatureExtractor` with `chunk_length=8`). Pipecat hands it the
audio from 0.5 s before the speech started up to now, trailing silence included; callers should
do the same. The model's output is already a sigmoid probability; pipecat calls a turn complete
above 0.5.

The call blocks for tens of milliseconds (`python -m benchmarks.turns --end-of-turn-only`
measures it): run it off the event loop. One model can serve every session; onnxruntime's `run`
is safe to call from several threads.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streaming.model import SAMPLE_RATE  # both the served model's rate and Smart Turn's / Silero's

if TYPE_CHECKING:
    from transformers import WhisperFeatureExtractor

SMART_TURN_PACKAGE = "pipecat"  # the import name of the `pipecat-ai` distribution
SMART_TURN_MODEL_FILE = "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
# Where the model file is missing: what to install (the `semantic` extra brings pipecat-ai).
SEMANTIC_INSTALL_HINT = (
    "semantic_vad needs `pip install step-realtime[semantic]` (Smart Turn's model file ships "
    "in the pipecat-ai package, which is not installed here)"
)
COMPLETE_PROBABILITY = 0.5  # pipecat's own cut between "complete" and "incomplete"
INT16_SCALE = 32768.0


class EndOfTurnModel:
    """Smart Turn v3.2 on onnxruntime: the probability that the turn so far is complete."""

    MAX_SECONDS = 8.0  # the model hears at most the last 8 s

    def __init__(self, model_path: str | Path | None = None, threads: int = 1) -> None:
        """`threads`: onnxruntime intra-op threads per call; 1 keeps one call on one core, so
        that calls from several sessions run side by side instead of contending."""
        import onnxruntime

        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        path = Path(model_path) if model_path is not None else smart_turn_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"no Smart Turn model file at {path}")
        options = onnxruntime.SessionOptions()
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._max_samples = int(self.MAX_SECONDS * SAMPLE_RATE)

    def probability(self, audio: np.ndarray) -> float:
        """The turn so far (16 kHz mono, int16 or float in [-1, 1]) -> P(the turn is complete).

        Blocking (tens of ms of CPU): callers run it off the event loop.
        """
        features = self.features(audio)
        (logits,) = self._session.run(None, {"input_features": features})
        return float(np.asarray(logits).reshape(-1)[0])

    def features(self, audio: np.ndarray) -> np.ndarray:
        """The model's input for `audio`: (1, 80, 800) float32 log-mel features."""
        window = self.last_window(audio)
        extracted = _feature_extractor()(
            window,
            sampling_rate=SAMPLE_RATE,
            return_tensors="np",
            padding="max_length",
            max_length=self._max_samples,
            truncation=True,
            do_normalize=True,
        )
        return np.asarray(extracted["input_features"], dtype=np.float32)

    def last_window(self, audio: np.ndarray) -> np.ndarray:
        """The last MAX_SECONDS of `audio` as float32, zero-padded at the front to that length
        (the end of the turn stays at the end of the window, where the model looks)."""
        samples = _as_float(audio)[-self._max_samples :]
        padded = np.zeros(self._max_samples, dtype=np.float32)
        if len(samples):
            padded[-len(samples) :] = samples
        return padded


def _as_float(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 1:
        raise ValueError(f"end-of-turn audio must be 1-D mono 16 kHz samples, got {audio.shape}")
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / INT16_SCALE
    if np.issubdtype(audio.dtype, np.floating):
        return audio.astype(np.float32)
    raise ValueError(f"end-of-turn audio must be int16 or float in [-1, 1], got {audio.dtype}")


@functools.cache
def _feature_extractor() -> WhisperFeatureExtractor:
    from transformers import WhisperFeatureExtractor

    # chunk_length=8: 8 s windows, 800 frames (the other parameters are Whisper's defaults:
    # 80 mel bins, 25 ms FFT, 10 ms hop), as Smart Turn v3 was trained.
    return WhisperFeatureExtractor(chunk_length=int(EndOfTurnModel.MAX_SECONDS))


def smart_turn_model_path() -> Path:
    """The Smart Turn v3.2 CPU model inside the installed `pipecat-ai` wheel.

    Found without importing pipecat: its package `__init__` imports loguru and more.
    """
    spec = importlib.util.find_spec(SMART_TURN_PACKAGE)
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(next(iter(locations))) / SMART_TURN_MODEL_FILE if locations else None
    if path is None or not path.is_file():
        raise FileNotFoundError(SEMANTIC_INSTALL_HINT)
    return path
