"""The one speech-synthesis interface, shared by every backend and by the server.

A `SpeechStream` takes the answer text as it is decoded (`feed`), and yields `AudioChunk`s of
24 kHz mono PCM16 as early as it can, each with the timings of the words it covers. `flush` ends
the input; `cancel` stops at once. Character offsets always refer to the original answer text
(everything fed so far, concatenated), so a barge-in can cut the transcript where the audio
stopped.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 24_000


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_char: int  # offsets into the original (un-normalised) answer text, end exclusive
    end_char: int
    start_ms: float  # audio time from the start of the response's audio
    end_ms: float


@dataclass
class AudioChunk:
    pcm: np.ndarray  # int16, mono, SAMPLE_RATE
    words: list[WordTiming] = field(default_factory=list)


class SpeechStream(abc.ABC):
    @abc.abstractmethod
    def feed(self, text: str) -> None:
        """Append answer text (any split: tokens, words, clauses)."""

    @abc.abstractmethod
    def flush(self) -> None:
        """No more text: speak what is left, then end the stream."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Stop now: no audio after this returns; the backend is ready for the next stream."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[AudioChunk]: ...


class TTSBackend(abc.ABC):
    @abc.abstractmethod
    def voices(self) -> list[str]:
        """The `voice` names that `session.update` may use."""

    @abc.abstractmethod
    def open_stream(self, voice: str, rate: float = 1.0) -> SpeechStream:
        """A stream for one response. Unknown voice: ValueError listing the valid ones."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers."""


WARM_UP_TEXT = "ready"


async def speak_once(backend: TTSBackend, text: str = WARM_UP_TEXT) -> int:
    """Speak `text` with the backend's first voice and return the samples it made: a warm-up
    (its library or model loaded, its first synthesis paid) that fails where the backend
    cannot speak. RuntimeError: it has no voice, or made no audio."""
    voices = backend.voices()
    if not voices:
        raise RuntimeError("the TTS backend has no voice")
    stream = backend.open_stream(voices[0])
    stream.feed(text)
    stream.flush()
    samples = 0
    async for chunk in stream:
        samples += len(chunk.pcm)
    if not samples:
        raise RuntimeError(f"the TTS backend made no audio for {text!r} ({voices[0]})")
    return samples
