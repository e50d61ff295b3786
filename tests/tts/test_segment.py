"""Clause segmentation of streamed text: where the cuts fall, fed whole or by character."""

import re

import pytest

from tts.segment import FIRST_PIECE_WORDS, ClauseSegmenter


def _segment(text: str, by: str) -> list[str]:
    segmenter = ClauseSegmenter()
    parts = list(text) if by == "char" else re.findall(r"\S+\s*|\s+", text)
    pieces = [piece for part in parts for piece in segmenter.feed(part)] + segmenter.flush()
    assert "".join(p.text for p in pieces) == text
    assert [p.start for p in pieces] == [
        sum(len(q.text) for q in pieces[:i]) for i in range(len(pieces))
    ]
    return [p.text for p in pieces]


@pytest.mark.parametrize("by", ["char", "token"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sure, the answer is 42.", ["Sure, ", "the answer is 42."]),
        ("Yes. It is.", ["Yes. ", "It is."]),
        (
            "The quick brown fox jumps over the lazy dog.",
            ["The quick brown fox jumps ", "over the lazy dog."],
        ),
        (
            "Dr. Smith arrived at 3.5 km. Then he left.",
            ["Dr. Smith arrived at 3.5 km. ", "Then he left."],
        ),
        ("We met e.g. on March 3, 2025 at noon.", ["We met e.g. on March 3, 2025 at ", "noon."]),
        ("It costs $5 million in total today.", ["It costs $5 million in ", "total today."]),
        ("Ok. $a, b$ and `x, y` stay whole.", ["Ok. ", "$a, b$ and `x, y` stay whole."]),
        ("Hi.\n```\na, b. c\n```\nDone.", ["Hi.\n", "```\na, b. c\n```\n", "Done."]),
        ("1. First item\n2. Second", ["1. First item\n", "2. Second"]),
        ("Hi. | a, b | c |\nNext.", ["Hi. ", "| a, b | c |\n", "Next."]),
        ("Go. See [docs, here](http://x.y) now.", ["Go. ", "See [docs, here](http://x.y) now."]),
        ("Ok. The J. R. R. Tolkien books.", ["Ok. ", "The J. R. R. Tolkien books."]),
    ],
)
def test_cuts(text: str, expected: list[str], by: str) -> None:
    assert _segment(text, by) == expected


def test_later_clauses_are_cut_only_when_long_enough() -> None:
    text = (
        "Well, first of all, yes. "
        "This clause is long enough to stand on its own, so it is cut; short, not."
    )
    assert _segment(text, "token") == [
        "Well, ",
        "first of all, yes. ",
        "This clause is long enough to stand on its own, ",
        "so it is cut; short, not.",
    ]


def test_a_long_run_without_punctuation_is_cut_at_a_word() -> None:
    text = "word " * 80
    pieces = _segment(text, "token")
    assert len(pieces) > 2
    assert all(p.endswith(" ") for p in pieces)


def test_first_piece_waits_for_enough_words() -> None:
    segmenter = ClauseSegmenter()
    words = ["one "] * (FIRST_PIECE_WORDS - 1)
    assert [segmenter.feed(w) for w in words] == [[]] * len(words)
    assert [p.text for p in segmenter.feed("more ")] == ["one " * (FIRST_PIECE_WORDS - 1) + "more "]


def test_a_token_is_never_split_before_its_whitespace_arrives() -> None:
    segmenter = ClauseSegmenter()
    assert segmenter.feed("Pi is about 3.") == []
    assert segmenter.feed("14, ") == []  # after "3.14, " a number may follow: wait to see
    assert [p.text for p in segmenter.feed("roughly. ")] == ["Pi is about 3.14, ", "roughly. "]


def test_end_pause_marks_punctuation_cuts() -> None:
    segmenter = ClauseSegmenter()
    first = segmenter.feed("red orange yellow green blue indigo ")
    assert [p.end_pause for p in first] == [False]
    assert [p.end_pause for p in segmenter.feed("violet. ")] == [True]
    assert segmenter.flush() == []


def test_number_words_stay_in_one_piece() -> None:
    """ "forty | two" spoken as two pieces is heard as "forty. Two." (or "forty, tune")."""
    for text, first in [
        ("Seven times six is forty two so there", "Seven times six is forty two "),
        ("It is one hundred and five apples", "It is one hundred and five "),
    ]:
        segmenter = ClauseSegmenter()
        pieces = [p.text for word in text.split() for p in segmenter.feed(word + " ")]
        assert pieces == [first]
