"""Round trip: written numbers -> normalise -> espeak-ng -> pocketsphinx (number grammar).

A fixed sample of 40 here (the first 40 of the benchmark's 200: every voice, three rates);
`python -m benchmarks.tts --round-trip-only` runs all 200 and reports the share right by voice
and by rate. The backend's Klatt voices measure 97.5-98.5% on the 200 and 39-40 of these 40
under four noise-floor seeds; the threshold is the design target, 95% (38 of 40): a voice the
recogniser cannot follow, a word lost in normalisation or broken audio fails it.
"""

import numpy as np
import pytest

from tests.tts.number_asr import PREFIXES, SUFFIXES, cases, round_trip, sentence_recognizer
from tts.asr import (
    ASR_SAMPLE_RATE,
    NumberRecognizer,
    number_grammar,
    words_to_number,
    words_to_numbers,
)
from tts.espeak import synthesize
from tts.normalize import normalize

SAMPLE = 40
MIN_RIGHT = 38  # measured 39-40; the formant voices used before got 33 of these 40


def test_numbers_survive_synthesis_and_recognition() -> None:
    recognizer = sentence_recognizer()
    results = [(case, round_trip(case, recognizer)) for case in cases(SAMPLE, seed=0)]
    right = sum(heard == case.number for case, (heard, _) in results)
    misses = [
        (case.text, case.voice, words) for case, (heard, words) in results if heard != case.number
    ]
    assert right >= MIN_RIGHT, misses


def test_a_formant_voice_the_recogniser_cannot_follow_fails_the_sample() -> None:
    """The test above can fail: a voice the recogniser cannot follow (2% on 100) stays far below."""
    recognizer = sentence_recognizer()
    sample = cases(SAMPLE // 2, seed=0)
    right = 0
    for case in sample:
        pcm, rate, _ = synthesize(normalize(case.text).text, "en-us+zac", case.rate_wpm, 50)
        right += recognizer.number(pcm, rate) == case.number
    assert right / len(sample) < MIN_RIGHT / SAMPLE / 2


def test_silence_is_no_number() -> None:
    recognizer = NumberRecognizer()
    assert recognizer.number(np.zeros(ASR_SAMPLE_RATE, np.int16), ASR_SAMPLE_RATE) is None


@pytest.mark.parametrize("samples", [0, 1, 400])
def test_a_reply_with_no_audio_is_no_words(samples: int) -> None:
    """Shorter than a frame: pocketsphinx would index past the buffer (IndexError)."""
    assert NumberRecognizer().recognise(np.zeros(samples, np.int16), 24_000) == ""


@pytest.mark.parametrize("number", [0, 7, 13, 40, 42, 105, 999, 1010, 7005, 12000, 123456])
def test_the_normalisers_number_forms_parse_back(number: int) -> None:
    assert words_to_number(normalize(str(number)).text.split()) == number


def test_words_to_number() -> None:
    assert words_to_number("the answer is forty two".split()) == 42
    assert words_to_number("seven thousand and five".split()) == 7005
    assert words_to_number("nine hundred and ninety nine apples".split()) == 999
    assert words_to_number("zero".split()) == 0
    assert words_to_number("apples".split()) is None


def test_words_to_numbers_finds_each_number() -> None:
    assert words_to_numbers("seven times six is forty two".split()) == [7, 6, 42]
    assert words_to_numbers("one hundred and five and two".split()) == [105, 2]
    assert words_to_numbers("no numbers here".split()) == []


def test_grammar_carries_the_phrases() -> None:
    grammar = number_grammar(PREFIXES, SUFFIXES)
    assert "[the answer is | there are | it is | i think it is] <number>" in grammar
    assert grammar.rstrip().endswith("[apples | kilometres away | kilometers away];")
