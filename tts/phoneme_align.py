"""Which spoken word each phoneme of a piece belongs to: word timings from phoneme durations.

A neural voice reads a whole piece phonemised at once, as it was trained: espeak-ng then joins
some words ("of the" -> `ʌvðə`), reduces others ("to" -> `tə`) and links across words
(`ɪɾ ɪz`), so the phoneme words of the piece do not map one to one onto its written words.
Each word is also phonemised alone, and the two phoneme strings are aligned with the fewest
edits (Levenshtein, stress marks left out: context moves them): every phoneme of the piece gets
the word of the phoneme it is aligned with; the ones left over (stress marks, inserted sounds)
take the next word found in their own phoneme word, punctuation the word before it and a space
the word after it, so a word lasts until the next one starts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tts.espeak import phonemize, phonemize_clauses
from tts.normalize import Spoken
from tts.piper_voice import split_phonemes

_PUNCTUATION = frozenset(".,;:!?")
_SPACE = " "
_STRESS = frozenset("ˈˌ")  # placed by context: not part of a word's sounds
_NOT_MATCHED = _PUNCTUATION | _STRESS | {_SPACE}
_WORD_CACHE_SIZE = 8192  # distinct words phonemised alone; numbers and function words repeat


@dataclass(frozen=True)
class PiecePhonemes:
    units: list[str]  # the voice's phoneme units, clause terminators and spaces kept
    word_of: list[int]  # index into `Spoken.spans` for each unit


def piece_phonemes(spoken: Spoken, espeak_voice: str) -> PiecePhonemes:
    """The piece phonemised in context, each unit mapped to the spoken word it sounds."""
    clauses = phonemize_clauses(spoken.text, espeak_voice)
    units = split_phonemes(" ".join(ipa + end for ipa, end in clauses if ipa or end))
    words = [spoken.text[span.start : span.end] for span in spoken.spans]
    alone = [split_phonemes(_word_alone(word, espeak_voice)) for word in words]
    return PiecePhonemes(units, align(units, alone))


@functools.lru_cache(maxsize=_WORD_CACHE_SIZE)
def _word_alone(word: str, espeak_voice: str) -> str:
    return phonemize(word, espeak_voice).replace(_SPACE, "")


def align(units: Sequence[str], word_units: Sequence[Sequence[str]]) -> list[int]:
    """For each unit of the piece, the index of the word (in `word_units`) it belongs to."""
    if not word_units:
        return [0] * len(units)
    target: list[str] = []
    target_word: list[int] = []
    for index, word in enumerate(word_units):
        sounds = [u for u in word if u not in _NOT_MATCHED]
        target += sounds
        target_word += [index] * len(sounds)
    positions = [i for i, unit in enumerate(units) if unit not in _NOT_MATCHED]
    word_of: list[int | None] = [None] * len(units)
    for a, b in _matched_pairs([units[i] for i in positions], target):
        word_of[positions[a]] = target_word[b]
    _fill_within_phoneme_words(units, word_of)
    return _fill_separators(units, word_of)


def _matched_pairs(source: Sequence[str], target: Sequence[str]) -> list[tuple[int, int]]:
    """(source index, target index) of the aligned pairs of a least-edits alignment.

    Levenshtein distance, one numpy row at a time: the diagonal and vertical steps are
    elementwise, the horizontal one (gaps in the source) a running minimum.
    """
    n, m = len(source), len(target)
    if n == 0 or m == 0:
        return []
    codes = {symbol: code for code, symbol in enumerate(set(source) | set(target))}
    target_codes = np.array([codes[t] for t in target])
    steps = np.arange(m + 1, dtype=np.float64)
    table = np.empty((n + 1, m + 1))
    table[0] = steps
    for i in range(1, n + 1):
        substitute = (target_codes != codes[source[i - 1]]).astype(np.float64)
        best = np.empty(m + 1)
        best[0] = i
        best[1:] = np.minimum(table[i - 1, :-1] + substitute, table[i - 1, 1:] + 1)
        table[i] = np.minimum.accumulate(best - steps) + steps
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        diagonal = table[i - 1, j - 1] + (source[i - 1] != target[j - 1])
        if table[i, j] == diagonal:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i, j] == table[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def _fill_within_phoneme_words(units: Sequence[str], word_of: list[int | None]) -> None:
    """Unmatched sounds take the next matched word of their own phoneme word, else the last."""
    start = 0
    while start < len(units):
        end = start
        while end < len(units) and units[end] != _SPACE:
            end += 1
        following: int | None = None
        for i in range(end - 1, start - 1, -1):
            if units[i] in _PUNCTUATION:
                continue
            if word_of[i] is None:
                word_of[i] = following
            else:
                following = word_of[i]
        start = end + 1


def _fill_separators(units: Sequence[str], word_of: Sequence[int | None]) -> list[int]:
    """Punctuation and unmatched units take the word before (at the start: word 0), a space
    the word after it; the result never goes back to an earlier word.

    A word starts at the space before it: VITS renders the move into a word's first sound
    over the boundary token (measured against a forced alignment, `benchmarks/tts.py`: word
    starts 46 ms late on average from the first phoneme, 0 ms from the space).
    """
    result: list[int] = []
    current = 0
    for value in word_of:
        if value is not None and value > current:
            current = value
        result.append(current)
    following = result[-1] if result else 0
    for index in range(len(units) - 1, -1, -1):
        if units[index] == _SPACE:
            result[index] = following
        else:
            following = result[index]
    return result
