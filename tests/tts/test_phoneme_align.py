"""Phonemes of a piece said in context, mapped back to its words (real espeak-ng)."""

import pytest

from tts.espeak import phonemize_clauses
from tts.normalize import normalize
from tts.phoneme_align import align, piece_phonemes


def _words_with_phonemes(text: str) -> list[tuple[str, str]]:
    spoken = normalize(text)
    phonemes = piece_phonemes(spoken, "en-us")
    groups: dict[int, str] = {}
    for unit, word in zip(phonemes.units, phonemes.word_of, strict=True):
        groups[word] = groups.get(word, "") + unit
    words = [spoken.text[s.start : s.end] for s in spoken.spans]
    return [(words[index], sounds.strip()) for index, sounds in sorted(groups.items())]


@pytest.mark.parametrize(
    "text",
    [
        "To be or not to be.",  # espeak says "təbi": one phoneme word for two words
        "Of the three, one of them is out of the way.",  # "ʌvðə", "ˌaʊɾəv"
        "There are forty two apples in total.",  # "ðɛɹˌɑːɹ"
    ],
)
def test_every_word_gets_its_own_sounds_in_order(text: str) -> None:
    pairs = _words_with_phonemes(text)
    assert [word for word, _ in pairs] == normalize(text).text.replace(",", "").rstrip(".").split()
    assert all(sounds.strip(".,ˈˌ ") for _, sounds in pairs)


def test_a_merged_phoneme_word_is_split_where_the_words_sound() -> None:
    pairs = dict(_words_with_phonemes("Of the three."))
    assert pairs["Of"].endswith("v") and "ð" in pairs["the"]


def test_mapping_never_goes_back_and_spaces_open_the_next_word() -> None:
    units = list("ab cd")
    word_of = align(units, [list("ab"), list("cd")])
    assert word_of == [0, 0, 1, 1, 1]
    assert align(list("xy"), []) == [0, 0]


def test_clause_terminators_are_kept() -> None:
    clauses = phonemize_clauses("Hello, Doctor Smith; what is up? I am fine.")
    assert [end for _, end in clauses] == [",", ";", "?", "."]
    assert all(ipa for ipa, _ in clauses)


def test_a_short_last_clause_is_not_lost() -> None:
    """espeak reads a character ahead: the last clause may still be inside it at the text's end."""
    assert [ipa for ipa, _ in phonemize_clauses("a, b")] == ["ˈeɪ", "bˈiː"]
    assert phonemize_clauses("  ") == []
