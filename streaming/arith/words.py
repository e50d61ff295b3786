"""The word vocabulary of the spoken questions, for the trainer's auxiliary listening loss.

Each audio token is labelled with the word heard at its centre: `SILENCE` where none is, the
word's id for a word of the questions, and `OTHER` for any other speech (off-task sentences,
words cut by the end of a clip): the encoder learns to tell the task's words from the rest.
"""

from __future__ import annotations

from streaming.arith.data import (
    NOUN_FORMS,
    OPERATORS,
    TRAIN_PREFIXES,
    TRAIN_SUFFIXES,
    VERB_FORMS,
    number_words,
    phrasings,
)

SILENCE = 0  # no word; word i of WORDS has id i + 1, and OTHER follows the last


def _all_words() -> tuple[str, ...]:
    texts = [t for op in OPERATORS for held in (False, True) for t in phrasings(op, held)]
    texts += [form for forms in (*NOUN_FORMS.values(), *VERB_FORMS.values()) for form in forms]
    texts += [number_words(n) for n in range(21)]
    texts += [*TRAIN_PREFIXES, *TRAIN_SUFFIXES]
    words = {w.lower() for text in texts for w in text.split() if "{" not in w}
    return tuple(sorted(words))


WORDS = _all_words()
OTHER = len(WORDS) + 1
LABELS = OTHER + 1  # classes of the word head
_IDS = {word: i + 1 for i, word in enumerate(WORDS)}


def word_id(word: str) -> int:
    return _IDS.get(word.lower(), OTHER)
