"""The espeak-ng binding: synthesis through the callback, word events, voices, rate and pitch."""

import numpy as np
import pytest

from tts.espeak import NATIVE_SAMPLE_RATE, Espeak, resolve_voice, synthesize

TEXT = "Hello world, this is a short test of the speech synthesiser."


def test_synthesize_returns_speech_and_word_timings() -> None:
    pcm, sample_rate, words = synthesize(TEXT)
    assert sample_rate == NATIVE_SAMPLE_RATE
    assert pcm.dtype == np.int16
    assert 2.0 < len(pcm) / sample_rate < 8.0  # eleven words at 175 wpm
    assert np.abs(pcm).max() > 1000  # not silence
    # espeak says "of the" as one word
    expected = TEXT.rstrip(".").replace(",", "").replace("of the", "of_the").split()
    assert [w.word for w in words] == [w.replace("_", " ") for w in expected]
    assert all(TEXT[w.start_char : w.end_char] == w.word for w in words)
    starts = [w.start_ms for w in words]
    assert starts == sorted(starts) and starts[0] == 0
    assert all(w.start_ms < w.end_ms for w in words)
    assert words[-1].end_ms == pytest.approx(len(pcm) / sample_rate * 1000)


def test_offsets_count_characters_not_bytes() -> None:
    text = "Café naïve über ok"
    _, _, words = synthesize(text)
    assert [text[w.start_char : w.end_char] for w in words] == ["Café", "naïve", "über", "ok"]


@pytest.mark.parametrize("voice", ["en-us", "en-gb", "en+f3", "en-us+m3", "en-gb-x-rp"])
def test_voices_and_variants_speak_differently(voice: str) -> None:
    reference, _, _ = synthesize("one two three", "en-us")
    pcm, _, _ = synthesize("one two three", voice)
    assert len(pcm) > 0
    if voice != "en-us":
        assert len(pcm) != len(reference) or not np.array_equal(pcm, reference)


def test_resolve_voice_maps_language_codes_to_voice_files() -> None:
    assert resolve_voice("en-gb") == "en"
    assert resolve_voice("en-gb+f3") == "en+f3"
    assert resolve_voice("en-us") == "en-US"


@pytest.mark.parametrize("voice", ["xx-nope", "en-us+nosuchvariant"])
def test_unknown_voice_is_an_error(voice: str) -> None:
    with pytest.raises(ValueError, match="unknown espeak-ng voice"):
        synthesize("hello", voice)


def test_rate_changes_duration_and_pitch_changes_sound() -> None:
    slow, _, _ = synthesize(TEXT, rate_wpm=120)
    fast, _, _ = synthesize(TEXT, rate_wpm=300)
    assert len(fast) < 0.7 * len(slow)
    low, _, _ = synthesize("aaah", pitch=10)
    high, _, _ = synthesize("aaah", pitch=90)
    assert _fundamental_frequency(high) > 1.5 * _fundamental_frequency(low)


def test_callback_streams_buffers_and_can_abort() -> None:
    engine = _engine()
    engine.configure("en-us", 175, 50)
    buffers: list[int] = []
    completed = engine.synth(
        TEXT * 3, lambda pcm, words: buffers.append(len(pcm)) or len(buffers) == 3
    )
    assert not completed
    assert len(buffers) == 3  # stopped at the third buffer
    full: list[int] = []
    assert engine.synth(TEXT, lambda pcm, words: full.append(len(pcm)) and False)
    assert len(full) > 3  # the instance is usable after an abort


def _engine() -> Espeak:
    # `synthesize` owns this process's instance; reuse it rather than initialise twice
    import tts.espeak as module

    synthesize("x")
    assert module._local_engine is not None
    return module._local_engine


def _fundamental_frequency(pcm: np.ndarray) -> float:
    """Pitch of the loudest 100 ms, by autocorrelation."""
    window = NATIVE_SAMPLE_RATE // 10
    energy = np.convolve(pcm.astype(np.float64) ** 2, np.ones(window), "valid")
    start = int(np.argmax(energy))
    frame = pcm[start : start + window].astype(np.float64)
    frame -= frame.mean()
    correlation = np.correlate(frame, frame, "full")[window - 1 :]
    shortest, longest = NATIVE_SAMPLE_RATE // 500, NATIVE_SAMPLE_RATE // 50
    lag = shortest + int(np.argmax(correlation[shortest:longest]))
    return NATIVE_SAMPLE_RATE / lag


def test_phonemize_gives_ipa() -> None:
    from tts.espeak import phonemize

    assert phonemize("Hello world") == "həlˈoʊ wˈɜːld"
    assert phonemize("Hello", "en-gb") == "həlˈəʊ"
