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
    # en-us speaks "aaah" at about 75 -> 47 Hz at pitch 10 and 160 -> 130 Hz at pitch 90
    low_hz, high_hz = _fundamental_frequency(low), _fundamental_frequency(high)
    assert 35 < low_hz < 100 and 100 < high_hz < 250, (low_hz, high_hz)
    assert high_hz > 1.5 * low_hz


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


# Pitch search range and the YIN threshold: a frame is voiced where its cumulative mean normalised
# difference dips below it.
PITCH_FLOOR_HZ, PITCH_CEILING_HZ = 30, 500
VOICED_THRESHOLD = 0.2


def _fundamental_frequency(pcm: np.ndarray) -> float:
    """Median pitch over the voiced frames, by YIN (de Cheveigne and Kawahara, 2002).

    Each 25 ms frame (hop 10 ms) takes the shortest lag whose cumulative mean normalised
    difference dips below `VOICED_THRESHOLD`, at the bottom of that dip: the normalisation and
    the shortest-dip rule keep a frame off the multiples of its period (an octave too low) and
    off the short lags of the formants (too high), and the median over the frames outvotes the
    frames that still err. espeak's low pitches fall fast and are far from periodic, and its
    waveform generator carries state from one synthesis to the next (the same text never
    comes back sample for sample), so a single-window autocorrelation peak, as this used to
    be, flipped between the fundamental and a harmonic with the order of the tests.
    """
    signal = pcm.astype(np.float64)
    shortest, longest = NATIVE_SAMPLE_RATE // PITCH_CEILING_HZ, NATIVE_SAMPLE_RATE // PITCH_FLOOR_HZ
    size, hop = NATIVE_SAMPLE_RATE * 25 // 1000, NATIVE_SAMPLE_RATE // 100
    starts = range(0, len(signal) - size - longest, hop)
    loudness = [float(np.sqrt(np.mean(signal[s : s + size] ** 2))) for s in starts]
    pitches = []
    for start, rms in zip(starts, loudness, strict=True):
        if rms < 0.1 * max(loudness):  # silence and the fading end
            continue
        frame = signal[start : start + size]
        lags = np.arange(1, longest + 1)
        difference = np.array(
            [np.sum((frame - signal[start + lag : start + lag + size]) ** 2) for lag in lags]
        )
        normalised = difference * lags / np.maximum(np.cumsum(difference), 1e-9)
        below = np.flatnonzero(normalised[shortest - 1 :] < VOICED_THRESHOLD)
        if not len(below):
            continue  # unvoiced
        index = shortest - 1 + int(below[0])
        while index + 1 < len(normalised) and normalised[index + 1] < normalised[index]:
            index += 1
        pitches.append(NATIVE_SAMPLE_RATE / lags[index])
    assert len(pitches) >= 5, f"only {len(pitches)} voiced frames"
    return float(np.median(pitches))


def test_phonemize_gives_ipa() -> None:
    from tts.espeak import phonemize

    assert phonemize("Hello world") == "həlˈoʊ wˈɜːld"
    assert phonemize("Hello", "en-gb") == "həlˈəʊ"
