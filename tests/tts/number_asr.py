"""The round-trip set: numbers in short sentences, spoken by the backend's voices.

Used by the round-trip test (a small sample) and `benchmarks/tts.py` (the 200-item figure, for
every backend: `speak` says a case through a backend's stream); the recognisers are `tts.asr`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from tts.asr import NumberRecognizer, number_grammar, words_to_number
from tts.base import TTSBackend, WordTiming
from tts.espeak import DEFAULT_RATE_WPM, synthesize
from tts.espeak_backend import VOICES as BACKEND_VOICES
from tts.normalize import normalize

VOICE_NAMES = list(BACKEND_VOICES)  # the OpenAI names, which every backend speaks
RATES_WPM = (150, 175, 200)
TEMPLATES = [
    "{n}",
    "The answer is {n}.",
    "There are {n} apples.",
    "It is {n} km away.",
    "I think it is {n}.",
]
# The carriers of TEMPLATES as the normaliser speaks them.
PREFIXES = ("the answer is", "there are", "it is", "i think it is")
SUFFIXES = ("apples", "kilometres away", "kilometers away")


@dataclass(frozen=True)
class Case:
    number: int
    text: str
    voice_name: str  # the backend voice (an OpenAI name)
    voice: str  # the espeak-ng voice behind it in the espeak backend, and its pitch
    pitch: int
    requested_wpm: int  # one of RATES_WPM
    rate_wpm: int  # the rate spoken: the voice's own tempo applied, as the backend does


def cases(count: int, seed: int = 0) -> list[Case]:
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        number = rng.choice(
            [rng.randrange(0, 100), rng.randrange(100, 1000), rng.randrange(1000, 10000)]
        )
        text = rng.choice(TEMPLATES).format(n=number)
        name = rng.choice(VOICE_NAMES)
        spec = BACKEND_VOICES[name]
        requested = rng.choice(RATES_WPM)
        spoken = round(requested * spec.tempo)
        result.append(Case(number, text, name, spec.espeak_voice, spec.pitch, requested, spoken))
    return result


def sentence_recognizer() -> NumberRecognizer:
    return NumberRecognizer(number_grammar(PREFIXES, SUFFIXES))


def round_trip(case: Case, recognizer: NumberRecognizer) -> tuple[int | None, str]:
    """Normalise and speak the case's text, recognise it: (number heard, words heard)."""
    pcm, sample_rate, _ = synthesize(
        normalize(case.text).text, case.voice, case.rate_wpm, case.pitch
    )
    heard = recognizer.recognise(pcm, sample_rate)
    return words_to_number(heard.split()), heard


async def speak(backend: TTSBackend, case: Case) -> tuple[np.ndarray, list[WordTiming]]:
    """The case's text through a backend stream (its voice, at its rate): 24 kHz pcm, timings."""
    stream = backend.open_stream(case.voice_name, case.requested_wpm / DEFAULT_RATE_WPM)
    stream.feed(case.text)
    stream.flush()
    chunks = [chunk async for chunk in stream]
    pcm = np.concatenate([c.pcm for c in chunks]) if chunks else np.zeros(0, np.int16)
    return pcm, [word for chunk in chunks for word in chunk.words]
