"""Spoken numbers recognised back with pocketsphinx (its wheel's English model) and a JSGF grammar.

Used by the round-trip test (a small sample) and `benchmarks/tts.py` (the 200-item figure).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import soxr
from pocketsphinx import Decoder

from tts.espeak import synthesize
from tts.espeak_backend import VOICES as BACKEND_VOICES
from tts.normalize import normalize

ASR_SAMPLE_RATE = 16_000
VOICES = [(spec.espeak_voice, spec.pitch) for spec in BACKEND_VOICES.values()]
# A faint noise floor, as any real channel has: pocketsphinx's silence and noise estimates
# misbehave on espeak's exact digital silence.
NOISE_FLOOR_RMS = 20.0
TEMPLATES = [
    "{n}",
    "The answer is {n}.",
    "There are {n} apples.",
    "It is {n} km away.",
    "I think it is {n}.",
]

_GRAMMAR = """#JSGF V1.0;
grammar numbers;
<digit> = one | two | three | four | five | six | seven | eight | nine;
<teen> = ten | eleven | twelve | thirteen | fourteen | fifteen | sixteen | seventeen
       | eighteen | nineteen;
<tens> = twenty | thirty | forty | fifty | sixty | seventy | eighty | ninety;
<below100> = <digit> | <teen> | <tens> [<digit>];
<hundred> = <digit> hundred [and <below100>];
<number> = zero | <below100> | <hundred> | <below100> thousand [and <below100> | <hundred>];
<prefix> = the answer is | there are | it is | i think it is;
<suffix> = apples | kilometres | kilometers | away | kilometres away | kilometers away;
public <utterance> = [<prefix>] <number> [<suffix>];
"""

_SMALL = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_UNITS = {word: value for value, word in enumerate(_SMALL)}
_TENS = {
    word: 20 + 10 * i
    for i, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
}


@dataclass(frozen=True)
class Case:
    number: int
    text: str
    voice: str
    pitch: int
    rate_wpm: int


def cases(count: int, seed: int = 0) -> list[Case]:
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        number = rng.choice(
            [rng.randrange(0, 100), rng.randrange(100, 1000), rng.randrange(1000, 10000)]
        )
        text = rng.choice(TEMPLATES).format(n=number)
        voice, pitch = rng.choice(VOICES)
        result.append(Case(number, text, voice, pitch, rng.choice([150, 175, 200])))
    return result


def words_to_number(words: list[str]) -> int | None:
    total, current, seen = 0, 0, False
    for word in words:
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current *= 100
        elif word == "thousand":
            total, current = total + current * 1000, 0
        else:
            continue
        seen = True
    return total + current if seen else None


class NumberRecognizer:
    def __init__(self) -> None:
        # Single-pass decoding: the lattice rescoring passes (fwdflat, bestpath) lose more
        # number words on synthetic speech than they fix.
        self._decoder = Decoder(
            samprate=ASR_SAMPLE_RATE, loglevel="FATAL", bestpath=False, fwdflat=False
        )
        self._noise = np.random.default_rng(0)
        self._decoder.add_jsgf_string("numbers", _GRAMMAR)
        self._decoder.activate_search("numbers")

    def recognise(self, pcm: np.ndarray, sample_rate: int) -> str:
        audio = soxr.resample(pcm, sample_rate, ASR_SAMPLE_RATE).astype(np.float64)
        audio += self._noise.normal(0.0, NOISE_FLOOR_RMS, len(audio))
        audio = np.clip(audio, -32768, 32767).astype(np.int16)
        self._decoder.start_utt()
        self._decoder.process_raw(audio.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis else ""


def round_trip(case: Case, recognizer: NumberRecognizer) -> tuple[int | None, str]:
    """Normalise and speak the case's text, recognise it: (number heard, words heard)."""
    pcm, sample_rate, _ = synthesize(
        normalize(case.text).text, case.voice, case.rate_wpm, case.pitch
    )
    heard = recognizer.recognise(pcm, sample_rate)
    return words_to_number(heard.split()), heard
