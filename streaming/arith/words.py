"""The word vocabulary of the spoken questions, for the trainer's auxiliary listening loss."""

from __future__ import annotations

from streaming.arith.data import NOUN_FORMS, OPERATORS, VERB_FORMS, number_words, phrasings

SILENCE = 0  # no word (or one outside the vocabulary); word i of WORDS has id i + 1


def _all_words() -> tuple[str, ...]:
    texts = [t for op in OPERATORS for held in (False, True) for t in phrasings(op, held)]
    texts += [form for forms in (*NOUN_FORMS.values(), *VERB_FORMS.values()) for form in forms]
    texts += [number_words(n) for n in range(21)]
    words = {w for text in texts for w in text.split() if "{" not in w}
    return tuple(sorted(words))


WORDS = _all_words()
_IDS = {word: i + 1 for i, word in enumerate(WORDS)}


def word_id(word: str) -> int:
    return _IDS.get(word.lower(), SILENCE)
