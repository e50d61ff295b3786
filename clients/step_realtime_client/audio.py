"""Audio for the wire: files and arrays to 24 kHz PCM16 mono, base64, WAV out, speech end.

The Realtime protocol's default format (`audio/pcm`, beta `pcm16`) is little-endian int16
mono at 24 kHz, both ways; everything here speaks that.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import soundfile
import soxr

WIRE_SAMPLE_RATE = 24_000
INT16_MAX = 32767
SPEECH_FRAME_MS = 20
# A frame is speech when its RMS is within this many dB of the loudest frame and above the floor;
# espeak-ng and microphone recordings both sit well above it.
SPEECH_RELATIVE_DB = -35.0
SPEECH_FLOOR_RMS = 100.0  # int16 units, about -50 dBFS


class AudioFileError(ValueError):
    """The file does not exist or is not audio soundfile can read."""


def to_wire(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Any mono or (frames, channels) array, int16 or float in [-1, 1] -> int16 mono 24 kHz."""
    audio = np.asarray(samples)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D or (frames, channels), got shape {audio.shape}")
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / (INT16_MAX + 1)
    audio = audio.astype(np.float32)
    if sample_rate != WIRE_SAMPLE_RATE:
        audio = soxr.resample(audio, sample_rate, WIRE_SAMPLE_RATE)
    wire: np.ndarray = (np.clip(audio, -1.0, 1.0) * INT16_MAX).astype(np.int16)
    return wire


def load_audio(path: str | Path) -> np.ndarray:
    """A WAV, FLAC, OGG... file as int16 mono at 24 kHz."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"no such audio file: {path}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioFileError(f"cannot read {path} as audio: {error}") from None
    return to_wire(data, rate)


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int = WIRE_SAMPLE_RATE) -> None:
    soundfile.write(str(path), np.asarray(pcm, dtype=np.int16), sample_rate, subtype="PCM_16")


def encode_pcm16(pcm: np.ndarray) -> str:
    return base64.b64encode(np.asarray(pcm, dtype="<i2").tobytes()).decode("ascii")


def decode_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def speech_end(pcm: np.ndarray, sample_rate: int = WIRE_SAMPLE_RATE) -> int:
    """The sample index just after the last speech frame (0 when there is no speech).

    An energy gate, not a VAD: it only needs to find where a recorded question stops, so that
    first-packet latency is measured from there rather than from the end of trailing silence.
    """
    frame = sample_rate * SPEECH_FRAME_MS // 1000
    n_frames = len(pcm) // frame
    if n_frames == 0:
        return 0
    frames = pcm[: n_frames * frame].astype(np.float32).reshape(n_frames, frame)
    rms = np.sqrt((frames**2).mean(axis=1))
    gate = max(SPEECH_FLOOR_RMS, rms.max() * 10 ** (SPEECH_RELATIVE_DB / 20))
    voiced = np.flatnonzero(rms >= gate)
    return 0 if len(voiced) == 0 else int((voiced[-1] + 1) * frame)


def silence(ms: int, sample_rate: int = WIRE_SAMPLE_RATE) -> np.ndarray:
    return np.zeros(sample_rate * ms // 1000, dtype=np.int16)


def duration_ms(pcm: np.ndarray, sample_rate: int = WIRE_SAMPLE_RATE) -> float:
    return len(pcm) * 1000 / sample_rate
