"""Audio front end: 16 kHz waveform -> 128-bin log-mel frames, as StepFun computes them.

`log_mel(wave)` pads 479 zero samples at the end, takes a centred STFT (n_fft 400, hop 160, Hann,
reflect padding), drops the last frame (as Whisper does), projects the power spectrum onto a
slaney-scale, slaney-normalised mel filterbank (librosa's default, built here in float64 NumPy),
then `log10(max(mel, 1e-10))`, clamps at `max - 8` and maps `(x + 4) / 4`. A clip of n samples
gives `(n + 479) // 160` frames. The arithmetic runs in float64 where the device has it (CPU,
CUDA): in float32 the quietest bins of speech drift by ~3e-5 relative; the result is float32.

`split_chunks(wave)` cuts audio longer than 25 s into 25 s pieces (the encoder holds 30 s);
each piece is its own audio span in the prompt.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from streaming.model import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
N_MELS = 128
END_PADDING = 479  # zero samples StepFun appends to every clip
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units kept below the loudest bin
CHUNK_SECONDS = 25
CHUNK_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE


def mel_frame_count(n_samples: int) -> int:
    """Frames `log_mel` returns for `n_samples` samples."""
    return (n_samples + END_PADDING) // HOP_LENGTH


def split_chunks(wave: torch.Tensor | np.ndarray) -> list[torch.Tensor]:
    """Cut a 1-D waveform into consecutive pieces of at most 25 s (the last may be short)."""
    wave = torch.as_tensor(wave)
    if wave.numel() == 0:
        return [wave]
    return list(torch.split(wave, CHUNK_SAMPLES))


def log_mel(
    wave: torch.Tensor | np.ndarray, n_mels: int = N_MELS, device: torch.device | str | None = None
) -> torch.Tensor:
    """[n_mels, (n + 479) // 160] float32 log-mel of a 1-D 16 kHz waveform in [-1, 1]."""
    wave = torch.as_tensor(wave)
    if wave.dim() != 1:
        raise ValueError(f"log_mel expects a 1-D waveform, got shape {tuple(wave.shape)}")
    device = torch.device(device or wave.device)
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    wave = F.pad(wave.to(device=device, dtype=dtype), (0, END_PADDING))
    window = torch.hann_window(N_FFT, device=device, dtype=dtype)
    stft = torch.stft(wave, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[:, :-1].abs() ** 2
    mel = mel_filters(n_mels, device, dtype) @ power
    log_spec = torch.clamp(mel, min=LOG_FLOOR).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - DYNAMIC_RANGE)
    return ((log_spec + 4.0) / 4.0).float()


def mel_filters(
    n_mels: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] slaney mel filterbank for 16 kHz, n_fft 400."""
    return _mel_filters_cpu(n_mels).to(dtype).to(device)  # cast first: MPS has no float64


@functools.lru_cache(maxsize=4)
def _mel_filters_cpu(n_mels: int) -> torch.Tensor:
    return torch.from_numpy(slaney_mel_filterbank(SAMPLE_RATE, N_FFT, n_mels))


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) with fmin 0, fmax sr/2, htk=False, norm='slaney'.

    Triangles between n_mels + 2 points equally spaced on the slaney mel scale (linear below
    1 kHz, logarithmic above), each scaled to unit area (2 / bandwidth in Hz). float64.
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    widths = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]


# Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = _F_SP * mel
    log = _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)
