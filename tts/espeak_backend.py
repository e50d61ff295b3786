"""The default speech backend: espeak-ng in worker processes, streamed clause by clause.

feed -> `ClauseSegmenter` (cuts in the original text) -> `normalize` (spoken words with their
source spans) -> a job on an espeak worker -> word-aligned pieces -> 22.05 -> 24 kHz resampling
(one soxr stream per response, so the filter state runs across clauses) -> `AudioChunk`s.

A chunk ends where the next original word starts, so every chunk carries the complete timings
of the words whose audio it holds; a chunk is released as soon as espeak has produced the start
of the next word (a fraction of a millisecond at espeak's speed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from tts.base import SAMPLE_RATE, AudioChunk, SpeechStream, TTSBackend, WordTiming
from tts.espeak import DEFAULT_RATE_WPM, NATIVE_SAMPLE_RATE, WordEvent
from tts.espeak_pool import EspeakPool, SynthJob
from tts.normalize import Spoken
from tts.piece_stream import PieceStream


@dataclass(frozen=True)
class VoiceSpec:
    espeak_voice: str
    pitch: int  # 0..100
    tempo: float = 1.0  # this voice's speaking rate, times DEFAULT_RATE_WPM at rate 1.0


# The OpenAI Realtime voice names. Only variants on espeak's Klatt synthesiser are used: a
# US-English recogniser (pocketsphinx) gets 96-100% of spoken numbers right from each of them,
# against 36-91% from the formant voices (m1-m8, f1-f5, ...), which blur "-teen"/"-ty" and
# "five"/"nine"; see `benchmarks/tts.py`. The Klatt variants share formants and timing, so each
# voice also gets its own voicing source, pitch (36-80: the higher ones stand in for the female
# voices, with no loss in recognition) and tempo.
VOICES: dict[str, VoiceSpec] = {
    "alloy": VoiceSpec("en-us+klatt", 50, 1.0),
    "ash": VoiceSpec("en-us+klatt3", 40, 0.96),
    "ballad": VoiceSpec("en-us+edward", 46, 0.92),
    "coral": VoiceSpec("en-us+klatt4", 72, 1.04),
    "echo": VoiceSpec("en-us+adam", 36, 0.94),
    "sage": VoiceSpec("en-us+klatt5", 66, 1.0),
    "shimmer": VoiceSpec("en-us+klatt6", 80, 1.06),
    "verse": VoiceSpec("en-us+edward2", 44, 1.02),
    "marin": VoiceSpec("en-us+klatt2", 70, 0.98),
    "cedar": VoiceSpec("en-us+benjamin", 42, 1.08),
}
_MS_PER_NATIVE_SAMPLE = 1000 / NATIVE_SAMPLE_RATE
_RESAMPLE_QUALITY = "HQ"


class EspeakBackend(TTSBackend):
    def __init__(self, max_workers: int | None = None) -> None:
        self._pool = EspeakPool(max_workers)

    @property
    def workers(self) -> int:
        return self._pool.size

    def voices(self) -> list[str]:
        return list(VOICES)

    def open_stream(self, voice: str, rate: float = 1.0) -> SpeechStream:
        if voice not in VOICES:
            raise ValueError(f"unknown voice {voice!r}; valid voices: {', '.join(VOICES)}")
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        spec = VOICES[voice]
        return EspeakStream(self._pool, spec, round(DEFAULT_RATE_WPM * spec.tempo * rate))

    async def close(self) -> None:
        self._pool.close()


class EspeakStream(PieceStream):
    def __init__(self, pool: EspeakPool, voice: VoiceSpec, rate_wpm: int) -> None:
        super().__init__()
        self._pool, self._voice, self._rate_wpm = pool, voice, rate_wpm
        self._resampler = soxr.ResampleStream(
            NATIVE_SAMPLE_RATE, SAMPLE_RATE, 1, dtype="int16", quality=_RESAMPLE_QUALITY
        )

    async def _synthesise(self, spoken: Spoken, end_pause: bool) -> None:
        voice = self._voice
        job = SynthJob(spoken.text, voice.espeak_voice, self._rate_wpm, voice.pitch, end_pause)
        aligner = _WordAligner(spoken, self._text, self._audio_ms)
        async with await self._pool.synth(job) as run:
            async for pcm, events in run:
                self._emit(*aligner.add(pcm, events))
        self._emit(*aligner.finish())
        self._audio_ms += aligner.samples * _MS_PER_NATIVE_SAMPLE

    def _emit(self, pcm: np.ndarray, words: list[WordTiming]) -> None:
        """Native-rate audio, resampled to 24 kHz on the response's own soxr stream."""
        out = self._resampler.resample_chunk(pcm) if len(pcm) else pcm
        if len(out) or words:
            self._put(AudioChunk(np.asarray(out, dtype=np.int16), words))

    def _finish(self) -> None:
        tail = self._resampler.resample_chunk(np.zeros(0, np.int16), last=True)
        if len(tail):
            self._put(AudioChunk(tail))


class _WordAligner:
    """One clause's buffers -> pieces that end where the next original word begins.

    Consecutive espeak words from the same original span ("docs dot example dot com" from one
    URL) make one `WordTiming`, and a word espeak says together with the previous one without an
    event of its own ("of the") joins that one, so the timings cover every spoken word. A word
    ends where the next begins, or at the clause's end.
    """

    def __init__(self, spoken: Spoken, source_text: str, timeline_start_ms: float) -> None:
        self._spans = spoken.spans
        self._spoken, self._source = spoken, source_text
        self._timeline_start_ms = timeline_start_ms
        self._buffers: list[np.ndarray] = []
        self.samples = 0  # received so far
        self._released = 0
        self._open: tuple[int, int] | None = None  # (index of its first spoken span, first sample)
        self._closed: list[WordTiming] = []

    def add(self, pcm: np.ndarray, events: list[WordEvent]) -> tuple[np.ndarray, list[WordTiming]]:
        self._buffers.append(pcm)
        self.samples += len(pcm)
        for event in events:
            index = self._spoken.span_index(event.start)
            if index is None or (
                self._open is not None and self._same_source(self._open[0], index)
            ):
                continue
            self._close_open_word(event.sample, index)
            self._open = (index, event.sample)
        return self._release(self._open[1] if self._open else self.samples)

    def finish(self) -> tuple[np.ndarray, list[WordTiming]]:
        self._close_open_word(self.samples, len(self._spans))
        return self._release(self.samples)

    def _same_source(self, a: int, b: int) -> bool:
        return (self._spans[a].source_start, self._spans[a].source_end) == (
            self._spans[b].source_start, self._spans[b].source_end
        )  # fmt: skip

    def _close_open_word(self, end_sample: int, next_index: int) -> None:
        if self._open is None:
            return
        first, start_sample = self._open
        covered = self._spans[first : max(next_index, first + 1)]
        start_char = covered[0].source_start
        end_char = max(span.source_end for span in covered)
        self._closed.append(
            WordTiming(
                word=self._source[start_char:end_char],
                start_char=start_char,
                end_char=end_char,
                start_ms=self._timeline_start_ms + start_sample * _MS_PER_NATIVE_SAMPLE,
                end_ms=self._timeline_start_ms + end_sample * _MS_PER_NATIVE_SAMPLE,
            )
        )
        self._open = None

    def _release(self, up_to: int) -> tuple[np.ndarray, list[WordTiming]]:
        held = np.concatenate(self._buffers) if self._buffers else np.zeros(0, np.int16)
        cut = max(0, up_to - self._released)
        self._buffers = [held[cut:]] if cut < len(held) else []
        self._released += cut
        words, self._closed = self._closed, []
        return held[:cut], words
