"""Kokoro-82M through onnxruntime, from a local model directory (the `kokoro` extra).

UNVERIFIED: no Kokoro weights were available where this was written, so this code has never
run against the real model. It follows the published ONNX export (kokoro-onnx, onnx-community):
IPA phonemes from espeak-ng -> token ids from the model's vocabulary -> one style vector per
voice, picked by the number of tokens -> 24 kHz float audio. Without onnxruntime or the model
files it raises `KokoroUnavailable` saying what is missing; no test pretends otherwise.

Model directory layout:
    config.json          {"vocab": {phoneme: id, ...}} (Kokoro's config)
    kokoro-v1.0.onnx     or model.onnx
    voices-v1.0.bin      or voices.npz: a NumPy archive, voice name -> (510, 1, 256) styles

Kokoro gives no word timings; a clause's duration is spread over its words in proportion to
their phoneme counts, an approximation good enough to cut a transcript on barge-in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import numpy as np

from tts.base import SAMPLE_RATE, AudioChunk, SpeechStream, TTSBackend, WordTiming
from tts.espeak import phonemize
from tts.normalize import Spoken
from tts.piece_stream import PieceStream

MAX_TOKENS = 510  # the model's context, minus the two boundary tokens
MODEL_FILES = ("kokoro-v1.0.onnx", "model.onnx")
VOICE_FILES = ("voices-v1.0.bin", "voices.npz")
# OpenAI voice names -> Kokoro voices (American and British English)
VOICES = {
    "alloy": "af_alloy",
    "ash": "am_adam",
    "ballad": "bm_george",
    "coral": "af_heart",
    "echo": "am_echo",
    "sage": "bf_emma",
    "shimmer": "af_nicole",
    "verse": "bm_lewis",
    "marin": "af_bella",
    "cedar": "am_michael",
}


class KokoroUnavailable(RuntimeError):
    pass


class KokoroModel:
    """The ONNX session, vocabulary and voice styles of one model directory."""

    def __init__(self, model_dir: str | Path) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise KokoroUnavailable(
                "the kokoro backend needs onnxruntime: pip install onnxruntime"
            ) from exc
        directory = Path(model_dir)
        model = _first_existing(directory, MODEL_FILES)
        voices = _first_existing(directory, VOICE_FILES)
        config = directory / "config.json"
        if not config.is_file():
            raise KokoroUnavailable(f"no config.json (with the phoneme vocabulary) in {directory}")
        self.vocab: dict[str, int] = json.loads(config.read_text())["vocab"]
        self.styles = dict(np.load(voices))
        self.session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}

    def tokens(self, phonemes: str) -> list[int]:
        return [self.vocab[p] for p in phonemes if p in self.vocab][:MAX_TOKENS]

    def synthesise(self, tokens: list[int], voice: str, speed: float) -> np.ndarray:
        """int16 mono at 24 kHz."""
        style = self.styles[voice][len(tokens)]  # (1, 256): styles are indexed by length
        ids = np.array([[0, *tokens, 0]], dtype=np.int64)
        if "input_ids" in self.input_names:  # onnx-community export
            inputs = {
                "input_ids": ids,
                "style": style.astype(np.float32),
                "speed": np.array([speed], np.float32),
            }
        else:  # kokoro-onnx export
            inputs = {
                "tokens": ids,
                "style": style.astype(np.float32),
                "speed": np.array([speed], np.float32),
            }
        audio = self.session.run(None, inputs)[0].reshape(-1)
        return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


class KokoroBackend(TTSBackend):
    def __init__(self, model_dir: str | Path) -> None:
        self._model = KokoroModel(model_dir)
        missing = [v for v in VOICES.values() if v not in self._model.styles]
        if missing:
            raise KokoroUnavailable(
                f"voices missing from the model directory: {', '.join(missing)}"
            )

    def voices(self) -> list[str]:
        return list(VOICES)

    def open_stream(self, voice: str, rate: float = 1.0) -> SpeechStream:
        if voice not in VOICES:
            raise ValueError(f"unknown voice {voice!r}; valid voices: {', '.join(VOICES)}")
        return KokoroStream(self._model, VOICES[voice], rate)


class KokoroStream(PieceStream):
    """Segmentation and normalisation as for espeak; each piece synthesised by Kokoro."""

    def __init__(self, model: KokoroModel, voice: str, rate: float) -> None:
        super().__init__()
        self._model, self._kokoro_voice, self._speed = model, voice, rate

    async def _synthesise(self, spoken: Spoken, end_pause: bool) -> None:
        words = spoken.text.split()
        word_phonemes = [phonemize(word) for word in words]
        tokens = self._model.tokens(" ".join(word_phonemes))
        # onnxruntime releases the GIL: a thread keeps the event loop free
        pcm = await asyncio.to_thread(
            self._model.synthesise, tokens, self._kokoro_voice, self._speed
        )
        duration_ms = len(pcm) * 1000 / SAMPLE_RATE
        timings = _spread(spoken, self._text, word_phonemes, self._audio_ms, duration_ms)
        self._put(AudioChunk(pcm, timings))  # already 24 kHz: no resampling
        self._audio_ms += duration_ms


def _spread(
    spoken: Spoken, source: str, word_phonemes: list[str], start_ms: float, duration_ms: float
) -> list[WordTiming]:
    weights = np.array([max(len(p), 1) for p in word_phonemes], dtype=np.float64)
    bounds = start_ms + duration_ms * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    timings: list[WordTiming] = []
    for i, span in enumerate(spoken.spans):
        start, end = span.source_start, span.source_end
        begin_ms, end_ms = float(bounds[i]), float(bounds[i + 1])
        if timings and (timings[-1].start_char, timings[-1].end_char) == (start, end):
            timings[-1] = dataclasses.replace(timings[-1], end_ms=end_ms)  # same original word
        else:
            timings.append(WordTiming(source[start:end], start, end, begin_ms, end_ms))
    return timings


def _first_existing(directory: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise KokoroUnavailable(f"none of {', '.join(names)} in {directory}")
