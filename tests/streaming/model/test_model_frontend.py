"""log_mel against an independent float64 NumPy reference of StepFun's formula."""

import numpy as np
import pytest
import torch

from streaming.model.frontend import (
    CHUNK_SAMPLES,
    log_mel,
    mel_frame_count,
    slaney_mel_filterbank,
    split_chunks,
)

RATE, N_FFT, HOP, N_MELS = 16_000, 400, 160, 128
MAX_RELATIVE_ERROR = 1e-5


def reference_filterbank() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=128), written out bin by bin."""

    def hz_to_mel(f: float) -> float:
        return f / (200 / 3) if f < 1000 else 15 + np.log(f / 1000) * 27 / np.log(6.4)

    def mel_to_hz(m: float) -> float:
        return m * 200 / 3 if m < 15 else 1000 * np.exp((m - 15) * np.log(6.4) / 27)

    edges = [mel_to_hz(m) for m in np.linspace(hz_to_mel(0), hz_to_mel(RATE / 2), N_MELS + 2)]
    bins = np.arange(N_FFT // 2 + 1) * RATE / N_FFT
    bank = np.zeros((N_MELS, len(bins)))
    for i in range(N_MELS):
        left, centre, right = edges[i], edges[i + 1], edges[i + 2]
        for k, f in enumerate(bins):
            rise = (f - left) / (centre - left)
            fall = (right - f) / (right - centre)
            bank[i, k] = max(0.0, min(rise, fall)) * 2 / (right - left)
    return bank


def reference_log_mel(wave: np.ndarray) -> np.ndarray:
    """StepFun's log_mel_spectrogram in float64 NumPy: pad 479, centred STFT, drop last frame."""
    x = np.concatenate([wave.astype(np.float64), np.zeros(479)])
    x = np.pad(x, N_FFT // 2, mode="reflect")
    n_frames = 1 + (len(x) - N_FFT) // HOP
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    frames = np.stack([x[i * HOP : i * HOP + N_FFT] * window for i in range(n_frames)], axis=1)
    power = np.abs(np.fft.rfft(frames, axis=0)) ** 2
    mel = reference_filterbank() @ power[:, :-1]
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8)
    return (log_spec + 4) / 4


def relative_error(ours: torch.Tensor, reference: np.ndarray) -> float:
    return float(np.abs(ours.double().numpy() - reference).max() / np.abs(reference).max())


def test_filterbank_matches_reference():
    ours = slaney_mel_filterbank(RATE, N_FFT, N_MELS)
    np.testing.assert_allclose(ours, reference_filterbank(), rtol=1e-12, atol=1e-15)


def test_noise_matches_reference():
    wave = np.random.default_rng(1).uniform(-0.5, 0.5, RATE + 1234).astype(np.float32)
    ours = log_mel(wave)
    reference = reference_log_mel(wave)
    assert ours.shape == reference.shape == (N_MELS, mel_frame_count(len(wave)))
    assert ours.dtype == torch.float32
    assert relative_error(ours, reference) < MAX_RELATIVE_ERROR


def test_speech_matches_reference(speech: np.ndarray):
    ours = log_mel(torch.from_numpy(speech))
    reference = reference_log_mel(speech)
    assert ours.shape == reference.shape
    assert relative_error(ours, reference) < MAX_RELATIVE_ERROR
    # Speech is not flat: the clamp at max - 8 must leave a real dynamic range.
    assert float(ours.max() - ours.min()) > 1.0


@pytest.mark.parametrize("n_samples", [0, 1, 159, 160, 161, 16_000, 16_479])
def test_frame_count(n_samples: int):
    wave = np.random.default_rng(n_samples).standard_normal(n_samples).astype(np.float32)
    assert log_mel(wave).shape == (N_MELS, (n_samples + 479) // 160)


def test_split_chunks_25_seconds():
    wave = torch.zeros(60 * RATE + 5)
    sizes = [len(c) for c in split_chunks(wave)]
    assert sizes == [CHUNK_SAMPLES, CHUNK_SAMPLES, 10 * RATE + 5]
    assert [len(c) for c in split_chunks(torch.zeros(CHUNK_SAMPLES))] == [CHUNK_SAMPLES]


def test_rejects_stereo():
    with pytest.raises(ValueError, match="1-D"):
        log_mel(np.zeros((2, 1000), dtype=np.float32))
