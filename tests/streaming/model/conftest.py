"""Fixtures for the model tests: the tiny checkpoint loaded, and speech from espeak-ng."""

from pathlib import Path

import numpy as np
import pytest

from streaming.model.checkpoint import LoadedModel
from tests.support.presets import float32_model
from tests.support.speech import speech_float32


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path) -> LoadedModel:
    return float32_model(tiny_checkpoint)


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """About two seconds of English speech at 16 kHz, float32 in [-1, 1]."""
    return speech_float32("What is seven times six?")
