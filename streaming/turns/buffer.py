"""The input audio buffer: 16 kHz int16 since the last commit or clear, on the audio clock."""

from __future__ import annotations

import numpy as np

from streaming.model import SAMPLE_RATE

SAMPLES_PER_MS = SAMPLE_RATE // 1000


class AudioBuffer:
    """Audio addressed by absolute sample index on the session's audio clock.

    `end` is the clock: every sample ever appended. `start` moves forward on commit, clear and
    trimming. Chunks are kept as appended and joined only when a slice is taken.
    """

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.start = 0
        self.end = 0

    def append(self, pcm: np.ndarray) -> None:
        if len(pcm):
            self._chunks.append(pcm)
            self.end += len(pcm)

    def slice(self, begin: int, stop: int) -> np.ndarray:
        whole = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return whole[max(0, begin - self.start) : max(0, stop - self.start)]

    def drop_before(self, index: int) -> None:
        kept = self.slice(index, self.end)
        self._chunks = [kept] if len(kept) else []
        self.start = max(self.start, min(index, self.end))

    def clear(self) -> None:
        self._chunks = []
        self.start = self.end

    @property
    def empty(self) -> bool:
        return self.end == self.start

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) / SAMPLES_PER_MS

    @property
    def clock_ms(self) -> float:
        return self.end / SAMPLES_PER_MS
