"""Audio on the wire: the Realtime formats, G.711 codecs, and streaming resampling.

Formats (GA name / beta alias): `audio/pcm` 24 kHz (`pcm16`), `audio/pcm` at 16 kHz (an
extension: `{"type": "audio/pcm", "rate": 16000}`), `audio/pcmu` G.711 mu-law 8 kHz
(`g711_ulaw`), `audio/pcma` G.711 A-law 8 kHz (`g711_alaw`). PCM is little-endian int16 mono.

The G.711 tables are computed here with numpy (ITU-T G.711, the classic Sun reference
algorithm): the standard library's `audioop` was removed in Python 3.13.

Resampling keeps state across chunks (soxr `ResampleStream`), so chunk edges leave no clicks.
The model side takes 16 kHz mono float32 in [-1, 1]; speech out comes at 24 kHz int16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr

from streaming.model import SAMPLE_RATE as MODEL_SAMPLE_RATE  # the encoder's input
from tts.base import SAMPLE_RATE as TTS_SAMPLE_RATE  # what tts.base.SpeechStream yields

INT16_SCALE = 32768.0
# soxr "MQ": holds back at most ~26 ms (8 -> 16 kHz) where "HQ" holds 66 ms, which the turn
# detector would see late; its passband is ample for speech.
STREAM_QUALITY = "MQ"

Codec = Literal["pcm16", "pcmu", "pcma"]


@dataclass(frozen=True)
class AudioFormat:
    codec: Codec
    sample_rate: int

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.codec == "pcm16" else 1

    def duration_ms(self, n_bytes: int) -> float:
        return 1000.0 * n_bytes / self.bytes_per_sample / self.sample_rate


PCM_24K = AudioFormat("pcm16", 24_000)
PCM_16K = AudioFormat("pcm16", 16_000)
PCMU = AudioFormat("pcmu", 8_000)
PCMA = AudioFormat("pcma", 8_000)

# --- G.711 ---------------------------------------------------------------------------------

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # in 14-bit units
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32) >> 2  # 14-bit, as the reference (and the old audioop) does
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, magnitude)  # first end >= magnitude
    value = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    value = np.where(segment >= 8, 0x7F, value)
    return (value ^ mask).astype(np.uint8)


def _ulaw_decode(codes: np.ndarray) -> np.ndarray:
    u = ~codes.astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + _ULAW_BIAS << exponent) - _ULAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_encode(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32) >> 3  # 13-bit
    mask = np.where(x >= 0, 0xD5, 0x55)
    x = np.where(x >= 0, x, -x - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, x)  # first end >= x
    shift = np.where(segment < 2, 1, segment)
    value = (segment << 4) | ((x >> shift) & 0x0F)
    value = np.where(segment >= 8, 0x7F, value)
    return (value ^ mask).astype(np.uint8)


def _alaw_decode(codes: np.ndarray) -> np.ndarray:
    a = codes.astype(np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    segment = (a & 0x70) >> 4
    t = np.where(segment == 0, t + 8, t + 0x108)
    t = np.where(segment > 1, t << np.maximum(segment - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32)
ULAW_ENCODE_TABLE = _ulaw_encode(_ALL_INT16)  # index: sample + 32768
ALAW_ENCODE_TABLE = _alaw_encode(_ALL_INT16)
ULAW_DECODE_TABLE = _ulaw_decode(np.arange(256))
ALAW_DECODE_TABLE = _alaw_decode(np.arange(256))


def ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    return ULAW_ENCODE_TABLE[pcm.astype(np.int32) + 32768]


def alaw_encode(pcm: np.ndarray) -> np.ndarray:
    return ALAW_ENCODE_TABLE[pcm.astype(np.int32) + 32768]


def ulaw_decode(codes: np.ndarray) -> np.ndarray:
    return ULAW_DECODE_TABLE[codes]


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    return ALAW_DECODE_TABLE[codes]


# --- bytes <-> samples ---------------------------------------------------------------------


def decode_bytes(fmt: AudioFormat, data: bytes) -> np.ndarray:
    """Wire bytes (a whole number of samples) to int16 samples at `fmt.sample_rate`."""
    if fmt.codec == "pcm16":
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    codes = np.frombuffer(data, dtype=np.uint8)
    return ulaw_decode(codes) if fmt.codec == "pcmu" else alaw_decode(codes)


def encode_samples(fmt: AudioFormat, pcm: np.ndarray) -> bytes:
    """int16 samples at `fmt.sample_rate` to wire bytes."""
    if fmt.codec == "pcm16":
        return pcm.astype("<i2").tobytes()
    return (ulaw_encode(pcm) if fmt.codec == "pcmu" else alaw_encode(pcm)).tobytes()


def to_model_audio(pcm16k: np.ndarray) -> np.ndarray:
    """int16 at 16 kHz to what the model reads: float32 in [-1, 1]."""
    return pcm16k.astype(np.float32) / INT16_SCALE


def resample(pcm: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """One-shot resampling of a whole int16 signal."""
    if in_rate == out_rate:
        return pcm
    return soxr.resample(pcm, in_rate, out_rate).astype(np.int16)


class _StreamResampler:
    """int16 in, int16 out, state kept across chunks; a pass-through when the rates match."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, "int16", quality=STREAM_QUALITY)
        )

    def __call__(self, pcm: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return pcm
        return self._stream.resample_chunk(pcm, last=last)


class InputDecoder:
    """Client audio in any format to 16 kHz int16, chunk by chunk.

    A chunk may split a PCM sample (odd byte count): the stray byte waits for the next chunk.
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._carry = b""
        self._resample = _StreamResampler(fmt.sample_rate, MODEL_SAMPLE_RATE)

    def feed(self, data: bytes) -> np.ndarray:
        data = self._carry + data
        whole = len(data) - len(data) % self.format.bytes_per_sample
        self._carry = data[whole:]
        return self._resample(decode_bytes(self.format, data[:whole]))


class OutputEncoder:
    """24 kHz int16 speech to wire bytes in the session's output format, chunk by chunk."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._resample = _StreamResampler(TTS_SAMPLE_RATE, fmt.sample_rate)

    def feed(self, pcm24k: np.ndarray) -> bytes:
        return encode_samples(self.format, self._resample(pcm24k))

    def flush(self) -> bytes:
        """What the resampler still holds, at the end of a response."""
        return encode_samples(self.format, self._resample(np.zeros(0, np.int16), last=True))
