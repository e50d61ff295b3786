"""The neural speech backend: Piper VITS voices on onnxruntime (CPU), streamed clause by clause.

feed -> `ClauseSegmenter` -> `normalize` -> the piece phonemised in context by espeak-ng, each
phoneme mapped to its spoken word (`tts.phoneme_align`) -> phoneme ids -> one encoder job
(text encoder, durations, flow) -> decoder jobs of a window of frames each -> 22.05 -> 24 kHz
(one soxr stream per response, as for espeak) -> `AudioChunk`s. Jobs run on a shared pool of
threads, most urgent first (`tts.inference_pool`); the first window of a response is short so
that its first audio comes early.

Word timings are the model's own: the encoder returns how many frames each phoneme id lasts
(the durations the VITS graph computes and the decoder renders, one frame = `hop` samples), so a
word starts at the first frame of the word-boundary token before it (where the voice moves into
its first sound) and lasts until the next word starts or the piece ends. What is left to err is
which word a phoneme is given to (`tts.phoneme_align`); `benchmarks/tts.py` measures the starts
against a forced alignment of the audio (pocketsphinx).

Voices: the OpenAI voice names are spread over the installed voices and their speakers; each
name also has its own tempo, pitch and noise (`VARIANTS`), so one single-speaker voice still
gives ten distinguishable ones. Pitch is moved by resampling (the audio is read as if recorded
at `pitch` times its rate, with the length scale raised to keep the tempo), which also moves the
formants a little, as a different speaker would.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from tts.base import SAMPLE_RATE, AudioChunk, SpeechStream, TTSBackend, WordTiming
from tts.inference_pool import InferencePool
from tts.normalize import Spoken
from tts.phoneme_align import piece_phonemes
from tts.piece_stream import PieceStream
from tts.piper_voice import Encoded, PiperModel, find_voices, phoneme_ids

# A response's windows double from the first (186 ms of audio at 22.05 kHz, decoded in ~15 ms on
# an idle core) to the largest (1.5 s): each one lasts longer than the next takes to decode, so
# the first audio is early and playback never waits, and long answers pay little for the
# decoder's context frames (24 per window: +19% decoding at the largest).
FIRST_WINDOW_FRAMES = 16
MAX_WINDOW_FRAMES = 128
_RESAMPLE_QUALITY = "HQ"


@dataclass(frozen=True)
class VoiceVariant:
    tempo: float = 1.0  # speaking rate, times the voice's own
    pitch: float = 1.0  # playback-rate factor: > 1 raises pitch and formants
    noise: float = 1.0  # times the voice's noise_scale (variation in the sound)
    noise_w: float = 1.0  # times its noise_w (variation in the durations)


# The OpenAI Realtime voice names. With one installed single-speaker voice these variants are
# all that tell the names apart: pitch within +-8% (more sounds processed), tempo within +-8%.
VARIANTS: dict[str, VoiceVariant] = {
    "alloy": VoiceVariant(),
    "ash": VoiceVariant(0.96, 0.94, 0.9),
    "ballad": VoiceVariant(0.92, 0.97, 1.1, 1.1),
    "coral": VoiceVariant(1.04, 1.06),
    "echo": VoiceVariant(0.95, 0.92, 0.8, 0.9),
    "sage": VoiceVariant(1.0, 1.04, 1.1),
    "shimmer": VoiceVariant(1.06, 1.08, 1.0, 1.2),
    "verse": VoiceVariant(1.02, 0.96, 1.2),
    "marin": VoiceVariant(0.98, 1.05, 0.9, 0.8),
    "cedar": VoiceVariant(1.08, 0.95),
}


@dataclass(frozen=True)
class VoiceSpec:
    model: PiperModel
    speaker: int | None  # None: a single-speaker voice
    variant: VoiceVariant


class PiperBackend(TTSBackend):
    def __init__(
        self,
        voice_path: str | Path | None = None,
        max_workers: int | None = None,
        search_path: Sequence[str] | None = None,
    ) -> None:
        """Every voice at `voice_path` (a .onnx or a folder), else every installed one.

        `max_workers`: inference threads (default: one per core); `search_path`: where to look
        for installed voice packages (default: `sys.path`).
        """
        self.models = [PiperModel(files) for files in find_voices(voice_path, search_path)]
        self._voices = assign_voices(self.models, list(VARIANTS))
        self._pool = InferencePool(max_workers)

    @property
    def workers(self) -> int:
        return self._pool.size

    def voices(self) -> list[str]:
        return list(self._voices)

    def voice_spec(self, voice: str) -> VoiceSpec:
        if voice not in self._voices:
            raise ValueError(f"unknown voice {voice!r}; valid voices: {', '.join(self._voices)}")
        return self._voices[voice]

    def open_stream(self, voice: str, rate: float = 1.0) -> SpeechStream:
        spec = self.voice_spec(voice)
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        return PiperStream(self._pool, spec, rate)

    async def close(self) -> None:
        self._pool.close()


def assign_voices(models: Sequence[PiperModel], names: Sequence[str]) -> dict[str, VoiceSpec]:
    """Each name -> a (voice, speaker) of the installed ones, spread evenly, and its variant."""
    pairs = [(model, speaker) for model in models for speaker in model.config.speakers or [None]]
    assigned = {}
    for index, name in enumerate(names):
        pick = index * len(pairs) // len(names) if len(pairs) > len(names) else index % len(pairs)
        model, speaker = pairs[pick]
        assigned[name] = VoiceSpec(model, speaker, VARIANTS.get(name, VoiceVariant()))
    return assigned


@dataclass
class _Piece:
    encoded: Encoded
    word_start_frames: list[int | None]  # per spoken span; None: no phoneme of its own


class PiperStream(PieceStream):
    def __init__(self, pool: InferencePool, spec: VoiceSpec, rate: float) -> None:
        super().__init__()
        self._pool, self._spec = pool, spec
        config, variant = spec.model.config, spec.variant
        self._input_rate = config.sample_rate * variant.pitch  # read faster: higher pitch
        self._scales = (
            config.noise_scale * variant.noise,
            config.length_scale * variant.pitch / (variant.tempo * rate),
            config.noise_w * variant.noise_w,
        )
        self._ms_per_frame = spec.model.hop / self._input_rate * 1000
        self._resampler = soxr.ResampleStream(
            self._input_rate, SAMPLE_RATE, 1, dtype="float32", quality=_RESAMPLE_QUALITY
        )
        self._first_audio_at: float | None = None  # time.monotonic() of the first chunk
        self._sent_s = 0.0  # audio put so far
        self._windows = 0  # decoded so far in this response

    def _window_frames(self) -> int:
        size = min(MAX_WINDOW_FRAMES, FIRST_WINDOW_FRAMES << min(self._windows, 8))
        self._windows += 1
        return size

    def _deadline(self) -> float:
        """When a listener who started at the first chunk runs out of audio (now: no audio yet)."""
        if self._first_audio_at is None:
            return time.monotonic()
        return self._first_audio_at + self._sent_s

    async def _synthesise(self, spoken: Spoken, end_pause: bool) -> None:
        piece = await self._pool.run(partial(self._encode, spoken), self._deadline())
        timings = self._word_timings(spoken, piece)
        decode, encoded = self._spec.model.decode, piece.encoded
        start = 0
        while start < encoded.frames:
            stop = min(encoded.frames, start + self._window_frames())
            audio = await self._pool.run(partial(decode, encoded, start, stop), self._deadline())
            last = stop == encoded.frames
            self._emit(
                audio,
                [t for t, frame in timings if start <= frame < stop or last and frame >= stop],
            )
            start = stop
        self._audio_ms += encoded.frames * self._ms_per_frame

    def _encode(self, spoken: Spoken, run_options: Any) -> _Piece:
        """Phonemes, ids and the encoder run (on a pool thread)."""
        model = self._spec.model
        phonemes = piece_phonemes(spoken, model.config.espeak_voice)
        ids, owners = phoneme_ids(phonemes.units, model.config.phoneme_ids)
        encoded = model.encode(ids, self._scales, self._spec.speaker, run_options)
        id_start = np.concatenate([[0], np.cumsum(encoded.frames_per_id)[:-1]])
        starts: list[int | None] = [None] * len(spoken.spans)
        for position, owner in enumerate(owners):
            if owner >= 0 and starts[phonemes.word_of[owner]] is None:
                starts[phonemes.word_of[owner]] = int(id_start[position])
        return _Piece(encoded, starts)

    def _word_timings(self, spoken: Spoken, piece: _Piece) -> list[tuple[WordTiming, int]]:
        """(timing, first frame) per original word; spans of one word, or silent, are merged."""
        words: list[tuple[int, int, int]] = []  # (source start, source end, first frame)
        for span, frame in zip(spoken.spans, piece.word_start_frames, strict=True):
            same_word = words and (words[-1][0], words[-1][1]) == (
                span.source_start,
                span.source_end,
            )
            if frame is None or same_word:
                if words:  # said with the word before ("of the" as one) or part of it
                    words[-1] = (words[-1][0], max(words[-1][1], span.source_end), words[-1][2])
                    continue
                frame = 0
            words.append((span.source_start, span.source_end, frame))
        timings = []
        for index, (start_char, end_char, frame) in enumerate(words):
            end_frame = words[index + 1][2] if index + 1 < len(words) else piece.encoded.frames
            timing = WordTiming(
                word=self._text[start_char:end_char],
                start_char=start_char,
                end_char=end_char,
                start_ms=self._audio_ms + frame * self._ms_per_frame,
                end_ms=self._audio_ms + max(end_frame, frame) * self._ms_per_frame,
            )
            timings.append((timing, frame))
        return timings

    def _emit(self, audio: np.ndarray, words: list[WordTiming]) -> None:
        out = self._resampler.resample_chunk(audio) if len(audio) else audio
        pcm = _to_int16(out)
        if len(pcm) and self._first_audio_at is None:
            self._first_audio_at = time.monotonic()
        self._sent_s += len(pcm) / SAMPLE_RATE
        if len(pcm) or words:
            self._put(AudioChunk(pcm, words))

    def _finish(self) -> None:
        tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        if len(tail):
            self._put(AudioChunk(_to_int16(tail)))


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
