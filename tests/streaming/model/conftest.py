"""Fixtures for the model tests: speech from espeak-ng (through the espeakng-loader wheel)."""

import ctypes
from pathlib import Path

import numpy as np
import pytest
import soxr
from espeakng_loader import get_data_path, get_library_path

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
TARGET_RATE = 16_000
SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class Espeak:
    """espeak-ng's C API through ctypes: text -> 16 kHz float32 speech."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(get_library_path())
        data_dir = str(Path(get_data_path()).parent).encode()  # the folder holding espeak-ng-data
        self.rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_dir, 0)
        if self.rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = SynthCallback(self._collect)  # kept alive for the C side
        self.lib.espeak_SetSynthCallback(self._callback)
        if self.lib.espeak_SetVoiceByName(b"en-us") != 0:
            raise RuntimeError("espeak-ng has no en-us voice")

    def _collect(self, samples, count, _events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    def speak(self, text: str) -> np.ndarray:
        self._chunks = []
        data = text.encode() + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8,
                                       None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed ({status})")
        self.lib.espeak_Synchronize()
        pcm = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        return soxr.resample(pcm, self.rate, TARGET_RATE).astype(np.float32)


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """About two seconds of English speech at 16 kHz, float32 in [-1, 1]."""
    return Espeak().speak("What is seven times six?")
