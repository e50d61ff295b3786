"""Test speech from espeak-ng (the project's own binding in `tts`), and the Realtime protocol's
append messages that carry it."""

from __future__ import annotations

import base64
import json

import numpy as np
import soxr

from tts.espeak import DEFAULT_RATE_WPM, synthesize

WIRE_RATE = 24_000  # the Realtime protocol's PCM16 rate
MODEL_RATE = 16_000  # what the model, the speech classifiers and the end-of-turn model hear
APPEND_MS = 20  # a microphone-like append size
# Silence before a barge-in's speech, sent after the reply's first audio: the reply could have
# played longer than a merge allows (server.protocol.session.MERGE_MAX_HEARD_MS), so the speech
# interrupts it rather than continuing the question.
BARGE_IN_LEAD_MS = 900


def speech(text: str, rate: int = WIRE_RATE, voice: str = "en-us") -> np.ndarray:
    """`text` spoken by espeak-ng as int16 at `rate`, without silence around it."""
    pcm, native_rate, _ = synthesize(text, voice)
    return soxr.resample(pcm, native_rate, rate).astype(np.int16)


def silence(ms: int, rate: int = WIRE_RATE) -> np.ndarray:
    return np.zeros(rate * ms // 1000, np.int16)


def spoken(
    text: str,
    rate: int = WIRE_RATE,
    lead_ms: int = 300,
    tail_ms: int = 1000,
    voice: str = "en-us",
) -> np.ndarray:
    """`text` spoken by espeak-ng as int16 at `rate`, with silence before and after."""
    return np.concatenate(
        [silence(lead_ms, rate), speech(text, rate, voice), silence(tail_ms, rate)]
    )


def speech_float32(
    text: str, voice: str = "en-us", rate: int = MODEL_RATE, rate_wpm: int = DEFAULT_RATE_WPM
) -> np.ndarray:
    """`text` spoken by espeak-ng as float32 in [-1, 1] at `rate`: a model's input."""
    pcm, native_rate, _ = synthesize(text, voice, rate_wpm=rate_wpm)
    return soxr.resample(pcm.astype(np.float32) / 32768, native_rate, rate).astype(np.float32)


def appends(pcm: np.ndarray, rate: int = WIRE_RATE, ms: int = APPEND_MS) -> list[str]:
    """`input_audio_buffer.append` messages carrying `pcm` (PCM16) in `ms` pieces."""
    step = rate * ms // 1000
    return [
        json.dumps(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(pcm[i : i + step].astype("<i2").tobytes()).decode(),
            }
        )
        for i in range(0, len(pcm), step)
    ]
