"""Cut streamed answer text into pieces to synthesise, as early as speech allows.

Cuts are made in the original text, before normalisation, because normalisation needs whole
constructs (a code fence, `$...$`, a URL, "3.5 km"), and a cut is only made at whitespace that
has already arrived, so a token can never be split ("3." may still become "3.5", "Dr" may still
become "Dr.").

- The first piece goes out at the first clause or sentence end, or after `FIRST_PIECE_WORDS`
  words, whichever comes first: that is the first audio of the response.
- Later pieces end at sentence ends and line breaks, or at clause ends once they are long
  enough to sound natural; a piece that grows past `MAX_PIECE_CHARS` is cut at a word.
- Never cut after an abbreviation or initial ("e.g.", "Dr.", "J."), between a number and what
  belongs to it ("5 km", "$3 million", "March 3, 2025"), between number words ("forty two",
  "one hundred and five"), nor inside code, math or a link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tts.speech_words import ABBREVIATIONS, MONTHS

FIRST_PIECE_WORDS = 5  # first audio after this many words even without punctuation
MIN_CLAUSE_CHARS = 40  # after the first piece, cut at a comma only past this length
MAX_PIECE_CHARS = 250  # cut at a word past this length, whatever the punctuation

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]*_]*$")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[–—-])[\"'”’)\]*_]*$")
_LAST_WORD = re.compile(r"\S+$")
_SAFE_WORD = re.compile(r"[A-Za-z'’]+[,;:.!?\"')\]*_]*")  # no digits, symbols or markup
_NUMBERED_ITEM = re.compile(r"(?:^|\n)[ \t]*\d{1,3}[.)]$")
_KEEP_WITH_NEXT = {w.lower() for w in (*ABBREVIATIONS, *MONTHS)}
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
    "ninety hundred thousand million billion trillion".split()
)
_NUMBER_JOINERS = frozenset({"and", "point"})  # "one hundred and five", "three point five"


@dataclass(frozen=True)
class Piece:
    text: str
    start: int  # offset of `text` in everything fed so far
    end_pause: bool  # ends at punctuation or a line: let the synthesiser pause after it


class ClauseSegmenter:
    def __init__(self) -> None:
        self._pending = ""
        self._pending_start = 0
        self._emitted_any = False

    def feed(self, text: str) -> list[Piece]:
        self._pending += text
        pieces = []
        while (cut := self._find_cut()) is not None:
            pieces.append(self._take(*cut))
        return pieces

    def flush(self) -> list[Piece]:
        if not self._pending.strip():
            self._pending_start += len(self._pending)
            self._pending = ""
            return []
        return [self._take(len(self._pending), True)]

    def _take(self, length: int, end_pause: bool) -> Piece:
        piece = Piece(self._pending[:length], self._pending_start, end_pause)
        self._pending = self._pending[length:]
        self._pending_start += length
        self._emitted_any = True
        return piece

    def _find_cut(self) -> tuple[int, bool] | None:
        """(length of the piece to take, whether it ends at punctuation), or None to wait."""
        text = self._pending
        last_word_cut = None
        words = 0
        for index, char in enumerate(text):
            if not char.isspace() or index == 0 or (text[index - 1].isspace() and char != "\n"):
                continue
            words += 1
            head = text[:index]
            if _inside_construct(head, at_line_end=char == "\n"):
                continue
            kind = _boundary_kind(head, text[index:])
            if kind == "sentence" or char == "\n":
                return index + 1, True
            if kind == "clause" and (
                not self._emitted_any or len(head.strip()) >= MIN_CLAUSE_CHARS
            ):
                return index + 1, True
            if kind == "word" and not _splits_a_number(head, text[index:]):
                if not self._emitted_any and words >= FIRST_PIECE_WORDS:
                    return index + 1, False
                last_word_cut = index + 1
        if len(text) > MAX_PIECE_CHARS and last_word_cut is not None:
            return last_word_cut, False
        return None


def _boundary_kind(head: str, rest: str) -> str | None:
    """What ends at the end of `head` (followed by whitespace): sentence, clause, word or None."""
    last_word = _LAST_WORD.search(head)
    word = last_word.group() if last_word else ""
    if word.lower() in _KEEP_WITH_NEXT or re.fullmatch(r"(?:[A-Za-z]\.)+", word):
        return None  # an abbreviation or initials: what follows belongs to it
    if _NUMBERED_ITEM.search(head):
        return None  # "1." opening a list item
    if _SENTENCE_END.search(head):
        return "sentence"
    if _CLAUSE_END.search(head):
        if head.rstrip(",")[-1:].isdigit() and not rest.lstrip()[:1].isalpha():
            return None  # "March 3, 2025", "1, 2, 3": keep numbers together (or wait to see)
        return "clause"
    return "word" if _SAFE_WORD.fullmatch(word) else None


def _splits_a_number(head: str, rest: str) -> bool:
    """True if a cut here would part number words ("forty | two"): heard apart, each would be
    said as a whole number, with the pause between ("forty. Two."). Waits for the next word."""
    last = head.split()[-1].lower() if head.split() else ""
    if last not in _NUMBER_WORDS and last not in _NUMBER_JOINERS:
        return False
    following = re.match(r"\s*(\S+)\s", rest)
    if following is None:
        return True  # the next word has not arrived whole: wait to see
    word = following.group(1).lower()
    return word in _NUMBER_WORDS or (last in _NUMBER_WORDS and word in _NUMBER_JOINERS)


def _inside_construct(head: str, at_line_end: bool) -> bool:
    """True while a code fence, inline code, math, link text or a table row is open."""
    if head.count("```") % 2:
        return True
    outside_fences = re.sub(r"```.*?```", "", head, flags=re.S)
    if outside_fences.count("`") % 2:
        return True
    math = re.sub(r"\$(?=\d)", "", outside_fences.replace("$$", "$"))  # "$5" is money
    if math.count("$") % 2:
        return True
    if outside_fences.count("\\(") > outside_fences.count("\\)"):
        return True
    if outside_fences.count("\\[") > outside_fences.count("\\]"):
        return True
    if outside_fences.count("[") > outside_fences.count("]"):
        return True
    current_line = outside_fences.rsplit("\n", 1)[-1]
    return not at_line_end and current_line.lstrip().startswith("|")
