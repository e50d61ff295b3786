"""Fixtures for the model tests: speech from espeak-ng (the project's own binding in `tts`)."""

import numpy as np
import pytest
import soxr

from tts.espeak import synthesize

TARGET_RATE = 16_000


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """About two seconds of English speech at 16 kHz, float32 in [-1, 1]."""
    pcm, rate, _ = synthesize("What is seven times six?", voice="en-us")
    wave = pcm.astype(np.float32) / 32768.0
    return soxr.resample(wave, rate, TARGET_RATE).astype(np.float32)
