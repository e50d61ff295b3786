"""Audio out: the reply's speech kept on its message item and encoded for the wire."""

from __future__ import annotations

import base64

import numpy as np

from server.protocol.audio import TTS_SAMPLE_RATE, OutputEncoder
from server.protocol.items import Item
from tts.base import AudioChunk


def audio_delta(encoder: OutputEncoder, message: Item, chunk: AudioChunk) -> tuple[str, float]:
    """Append `chunk` to `message` (its audio and word timings); returns the base64 delta for
    the client (empty while the resampler holds it all) and the milliseconds of speech added."""
    pcm = chunk.pcm.astype(np.int16)
    message.audio = np.concatenate([message.audio, pcm]) if message.audio is not None else pcm
    message.words.extend(chunk.words)
    return _base64(encoder.feed(pcm)), len(pcm) * 1000 / TTS_SAMPLE_RATE


def audio_tail(encoder: OutputEncoder) -> str:
    """What the resampler still holds at the end of a response, as a base64 delta."""
    return _base64(encoder.flush())


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else ""
