"""Codecs and resampling of server/audio.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from server.protocol import audio

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def test_g711_reference_points() -> None:
    # ITU-T G.711: silence is 0xFF in mu-law and 0xD5 in A-law; extremes decode to +-32124 / 32256
    assert audio.ulaw_encode(np.array([0]))[0] == 0xFF
    assert audio.alaw_encode(np.array([0]))[0] == 0xD5
    assert audio.ulaw_decode(np.array([0x00, 0x80])).tolist() == [-32124, 32124]
    assert audio.alaw_decode(np.array([0x55, 0xD5])).tolist() == [-8, 8]
    assert audio.alaw_decode(np.array([0x2A, 0xAA])).tolist() == [-32256, 32256]


@pytest.mark.parametrize("codec", ["ulaw", "alaw"])
def test_g711_matches_audioop_where_it_still_exists(codec: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13
    data = ALL_INT16.astype("<i2").tobytes()
    encoded = getattr(audioop, f"lin2{codec}")(data, 2)
    ours = getattr(audio, f"{codec}_encode")(ALL_INT16)
    assert np.array_equal(np.frombuffer(encoded, np.uint8), ours)
    decoded = getattr(audioop, f"{codec}2lin")(bytes(range(256)), 2)
    assert np.array_equal(
        np.frombuffer(decoded, "<i2"), getattr(audio, f"{codec}_decode")(np.arange(256))
    )


@pytest.mark.parametrize("codec", ["ulaw", "alaw"])
def test_g711_round_trip_is_stable(codec: str) -> None:
    encode, decode = getattr(audio, f"{codec}_encode"), getattr(audio, f"{codec}_decode")
    codes = encode(ALL_INT16)
    assert np.array_equal(encode(decode(codes)), codes)
    # quantisation error stays within the largest segment step
    assert np.abs(decode(codes).astype(np.int32) - ALL_INT16).max() <= 1024


def _tone(rate: int, ms: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


@pytest.mark.parametrize("fmt", [audio.PCM_24K, audio.PCM_16K, audio.PCMU, audio.PCMA])
def test_input_decoder_in_odd_chunks_matches_one_shot(fmt: audio.AudioFormat) -> None:
    wire = audio.encode_samples(fmt, _tone(fmt.sample_rate, 1000))
    whole = audio.InputDecoder(fmt).feed(wire)
    decoder = audio.InputDecoder(fmt)
    pieces = [decoder.feed(wire[i : i + 333]) for i in range(0, len(wire), 333)]  # splits samples
    chunked = np.concatenate(pieces)
    n = min(len(whole), len(chunked))
    assert n > 0.95 * audio.MODEL_SAMPLE_RATE  # a second in, a second out (less filter delay)
    assert np.abs(whole[:n].astype(int) - chunked[:n]).max() <= 4  # rounding only: state kept


@pytest.mark.parametrize("fmt", [audio.PCM_24K, audio.PCM_16K, audio.PCMU, audio.PCMA])
def test_output_encoder_keeps_duration_and_pitch(fmt: audio.AudioFormat) -> None:
    encoder = audio.OutputEncoder(fmt)
    tone = _tone(audio.TTS_SAMPLE_RATE, 1000)
    wire = b"".join(encoder.feed(tone[i : i + 4800]) for i in range(0, len(tone), 4800))
    wire += encoder.flush()
    pcm = audio.decode_bytes(fmt, wire)
    assert abs(len(pcm) - fmt.sample_rate) <= fmt.sample_rate // 100
    spectrum = np.abs(np.fft.rfft(pcm.astype(float)))
    peak_hz = np.argmax(spectrum) * fmt.sample_rate / len(pcm)
    assert abs(peak_hz - 440) < 5


def test_model_audio_is_float32_in_unit_range() -> None:
    out = audio.to_model_audio(np.array([-32768, 0, 32767], np.int16))
    assert out.dtype == np.float32 and out.min() == -1.0 and out.max() < 1.0
