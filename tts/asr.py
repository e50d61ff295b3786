"""Spoken numbers recognised with pocketsphinx (its wheel's US English model) and a JSGF grammar.

The judge of the speech round trips: synthesised numbers (`tests/tts`, `benchmarks/tts.py`) and
spoken answers of the arithmetic model. pocketsphinx is a development dependency, imported only
when a recogniser is made, so the server never needs it.

The grammar matches the spoken forms `tts.normalize` produces for 0..999,999 (num2words':
"forty two", "one hundred and five", "one thousand and ten", "one hundred and twenty three
thousand four hundred and fifty six") inside a caller's carrier phrases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import soxr

if TYPE_CHECKING:
    from pocketsphinx import Decoder

ASR_SAMPLE_RATE = 16_000  # the rate of the wheel's acoustic model
# A faint noise floor, as any real channel has: pocketsphinx's silence and noise estimates
# misbehave on espeak's exact digital silence (measured on the round trip: 90% without it,
# 96.5-97.5% at an RMS of 5-100).
NOISE_FLOOR_RMS = 20.0

NUMBER_RULES = """\
<digit> = one | two | three | four | five | six | seven | eight | nine;
<teen> = ten | eleven | twelve | thirteen | fourteen | fifteen | sixteen | seventeen
       | eighteen | nineteen;
<tens> = twenty | thirty | forty | fifty | sixty | seventy | eighty | ninety;
<below100> = <digit> | <teen> | <tens> [<digit>];
<hundreds> = <digit> hundred [and <below100>];
<below1000> = <below100> | <hundreds>;
<number> = zero | <below1000> | <below1000> thousand [and <below100> | <hundreds>];
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
_SCALES = ("hundred", "thousand")


def number_grammar(prefixes: Sequence[str] = (), suffixes: Sequence[str] = ()) -> str:
    """A JSGF grammar: an optional carrier prefix, one number, an optional suffix (lower case).

    Carriers may hold numbers too: `number_grammar(["<number> times <number> is"])` hears
    "seven times six is forty two" (`words_to_numbers` -> [7, 6, 42]).
    """
    rule = "public <utterance> ="
    if prefixes:
        rule += " [" + " | ".join(prefixes) + "]"
    rule += " <number>"
    if suffixes:
        rule += " [" + " | ".join(suffixes) + "]"
    return f"#JSGF V1.0;\ngrammar numbers;\n{NUMBER_RULES}{rule};\n"


def words_to_number(words: Sequence[str]) -> int | None:
    """The number that number words spell ("forty two" -> 42); other words are skipped."""
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


def words_to_numbers(words: Sequence[str]) -> list[int]:
    """Every number in a sentence: "seven times six is forty two" -> [7, 6, 42].

    "and" belongs to a number only right after "hundred" or "thousand" ("one hundred and five").
    """
    numbers: list[int | None] = []
    run: list[str] = []
    for word in words:
        joins = word == "and" and bool(run) and run[-1] in _SCALES
        if word in _UNITS or word in _TENS or word in _SCALES or joins:
            run.append(word)
            continue
        if run:
            numbers.append(words_to_number(run))
        run = []
    if run:
        numbers.append(words_to_number(run))
    return [number for number in numbers if number is not None]


class NumberRecognizer:
    """Whole utterances in, the words of the grammar's best path out."""

    def __init__(self, grammar: str | None = None, seed: int = 0) -> None:
        from pocketsphinx import Decoder  # development dependency, see the module docstring

        # Single-pass decoding: the lattice rescoring passes (fwdflat, bestpath) lose more
        # number words on synthetic speech than they fix (measured on the round trip: 70.5%
        # against 77% with espeak's formant voices, 97% against 97.5% with its Klatt voices).
        self._decoder: Decoder = Decoder(
            samprate=ASR_SAMPLE_RATE, loglevel="FATAL", bestpath=False, fwdflat=False
        )
        self._decoder.add_jsgf_string("numbers", grammar or number_grammar())
        self._decoder.activate_search("numbers")
        self._noise = np.random.default_rng(seed)

    def recognise(self, pcm: np.ndarray, sample_rate: int) -> str:
        """int16 mono `pcm` at any rate -> the words heard (empty when nothing matched)."""
        audio = soxr.resample(pcm.astype(np.float64), sample_rate, ASR_SAMPLE_RATE)
        audio += self._noise.normal(0.0, NOISE_FLOOR_RMS, len(audio))
        audio = np.clip(audio, -32768, 32767).astype(np.int16)
        self._decoder.start_utt()
        self._decoder.process_raw(audio.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis else ""

    def number(self, pcm: np.ndarray, sample_rate: int) -> int | None:
        return words_to_number(self.recognise(pcm, sample_rate).split())
