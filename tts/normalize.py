"""Answer text -> text for a speech synthesiser, with a map back to the original characters.

An LLM answer is written to be read: markdown, code, LaTeX, URLs, symbols, digits. A synthesiser
reads it badly ("asterisk asterisk", "dollar backslash frac"). `normalize` rewrites it as words
and keeps, for every spoken word, the span of the original text it came from, so that when the
user barges in the transcript is cut where the audio stopped.

The rewrite is one left-to-right scan: at each position the first rule of `_RULES` that matches
consumes some original text and emits spoken words (all mapped to what it consumed) or a pause
mark. Rules are ordered from the most to the least specific (a code fence before inline code,
a URL before a plain word, a currency amount before a bare number). Emoji and decoration are
dropped; a code block is announced, not read.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tts import speech_words as sw


@dataclass(frozen=True)
class SpokenSpan:
    start: int  # in the spoken text, end exclusive
    end: int
    source_start: int  # in the original text, end exclusive
    source_end: int


@dataclass
class Spoken:
    text: str = ""
    spans: list[SpokenSpan] = field(default_factory=list)

    def source_span(self, position: int) -> tuple[int, int] | None:
        """The original span of the spoken word at (or first after) `position`."""
        index = self.span_index(position)
        return (
            None
            if index is None
            else (self.spans[index].source_start, self.spans[index].source_end)
        )

    def span_index(self, position: int) -> int | None:
        """Index in `spans` of the spoken word at (or first after) `position`."""
        index = bisect.bisect_right([span.end for span in self.spans], position)
        return index if index < len(self.spans) else None

    def add_words(self, words: list[str], source_start: int, source_end: int) -> None:
        for word in words:
            if self.text and not self.text.endswith(" "):
                self.text += " "
            start = len(self.text)
            self.text += word
            self.spans.append(SpokenSpan(start, len(self.text), source_start, source_end))

    def add_pause(self, mark: str) -> None:
        """A punctuation mark for prosody; a stronger mark replaces a weaker one."""
        stripped = self.text.rstrip()
        if not stripped:
            return
        if stripped[-1] in ".!?" or (stripped[-1] in ",;:" and mark in ",;:"):
            return
        if stripped[-1] in ",;:":
            stripped = stripped[:-1]
        self.text = stripped + mark + " "


Emit = Callable[[re.Match[str], Spoken, int], None]  # (match, output, offset of the text)


def normalize(text: str, offset: int = 0) -> Spoken:
    """Spoken form of `text`; source spans are shifted by `offset` (the text's place in a reply)."""
    spoken = Spoken()
    _scan(text, spoken, offset)
    spoken.text = spoken.text.rstrip()
    return spoken


def _scan(text: str, spoken: Spoken, offset: int) -> None:
    position = 0
    while position < len(text):
        for pattern, emit in _RULES:
            match = pattern.match(text, position)
            if match and match.end() > position:
                emit(match, spoken, offset)
                position = match.end()
                break
        else:
            position += 1  # nothing to say for this character


# --- emitters ---------------------------------------------------------------------------------


def _words(words: Callable[[re.Match[str]], list[str]]) -> Emit:
    """Every word for the whole match."""

    def emit(match: re.Match[str], spoken: Spoken, offset: int) -> None:
        text = match.group()
        start = offset + match.start() + len(text) - len(text.lstrip())
        end = offset + match.end() - (len(text) - len(text.rstrip()))
        spoken.add_words(words(match), start, end)

    return emit


def _inner(group: str, then_pause: str = "") -> Emit:
    """Speak only a group of the match (link text, heading text), in place."""

    def emit(match: re.Match[str], spoken: Spoken, offset: int) -> None:
        _scan(match.group(group), spoken, offset + match.start(group))
        if then_pause:
            spoken.add_pause(then_pause)

    return emit


def _pause(mark: str) -> Emit:
    def emit(match: re.Match[str], spoken: Spoken, offset: int) -> None:
        spoken.add_pause(mark)

    return emit


def _skip(match: re.Match[str], spoken: Spoken, offset: int) -> None:
    pass


def _table_row(match: re.Match[str], spoken: Spoken, offset: int) -> None:
    cells_start = match.start("cells")
    for cell in re.finditer(r"[^|]+", match.group("cells")):
        _scan(cell.group(), spoken, offset + cells_start + cell.start())
        spoken.add_pause(",")
    spoken.add_pause(".")


def _list_number(match: re.Match[str], spoken: Spoken, offset: int) -> None:
    spoken.add_pause(".")
    start, end = offset + match.start("n"), offset + match.end("n")
    spoken.add_words(sw.cardinal(match.group("n")), start, end)
    spoken.add_pause(",")


def _sentence_end(match: re.Match[str], spoken: Spoken, offset: int) -> None:
    spoken.add_pause("?" if "?" in match.group() else "!" if "!" in match.group() else ".")


# --- rules, most specific first ---------------------------------------------------------------

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_UNIT_NAMES = "|".join(sorted(map(re.escape, sw.UNITS), key=len, reverse=True))
_CURRENCY_SYMBOLS = "".join(sw.CURRENCY_SYMBOLS)
_ABBREVIATIONS = "|".join(map(re.escape, sw.ABBREVIATIONS))
_MONTHS = "|".join(sw.MONTHS)

_RULES: list[tuple[re.Pattern[str], Emit]] = [
    # code and math
    (re.compile(r"```.*?(?:```|\Z)", re.S), _words(lambda m: ["code", "block"])),
    (
        re.compile(r"\$\$(?P<x>.+?)\$\$|\\\[(?P<y>.+?)\\\]", re.S),
        _words(lambda m: sw.latex(m.group("x") or m.group("y"))),
    ),
    (
        re.compile(r"\\\((?P<x>.+?)\\\)|\$(?P<y>[^$\d\s][^$]*?|[^$]*?[\\^_=][^$]*?)\$(?!\d)"),
        _words(lambda m: sw.latex(m.group("x") or m.group("y"))),
    ),
    (re.compile(r"`(?P<x>[^`\n]+)`"), _words(lambda m: sw.code(m.group("x")))),
    (
        re.compile(r"\\(?:frac|sqrt|times|cdot|le|ge|neq|pi)\b[^\s]*"),
        _words(lambda m: sw.latex(m.group())),
    ),
    # markdown structure
    (re.compile(r"!?\[(?P<t>[^\]\n]*)\]\([^)\s]*\)"), _inner("t")),
    (
        re.compile(r"(?m)^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$"),
        _skip,
    ),
    (re.compile(r"(?m)^[ \t]*\|(?P<cells>.*)\|[ \t]*$"), _table_row),
    (re.compile(r"(?m)^[ \t]*(?:[-*_][ \t]*){3,}$"), _pause(".")),
    (re.compile(r"(?m)^[ \t]*#{1,6}[ \t]+(?P<t>[^\n]*?)[ \t#]*$"), _inner("t", ".")),
    (re.compile(r"(?m)^[ \t]*>[ \t]?"), _skip),
    (re.compile(r"(?m)^[ \t]*[-*+•][ \t]+"), _pause(".")),
    (re.compile(r"(?m)^[ \t]*(?P<n>\d{1,3})[.)][ \t]+"), _list_number),
    (re.compile(r"(?<=\d)[ \t]*[*×x][ \t]*(?=\d)"), _words(lambda m: ["times"])),
    (re.compile(r"(?<=\d)[ \t]+[-−][ \t]+(?=\d)"), _words(lambda m: ["minus"])),
    (re.compile(r"(?<=\d)[-–](?=\d)"), _words(lambda m: ["to"])),
    (re.compile(r"\*{1,3}|_{2,3}|~~|(?<!\w)_|_(?!\w)"), _skip),
    # links and addresses
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), _words(lambda m: sw.email(m.group()))),
    (
        re.compile(r"(?:https?://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"]"),
        _words(lambda m: sw.url(m.group())),
    ),
    # dates, times, money, quantities
    (
        re.compile(r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b"),
        _words(lambda m: sw.date(int(m["y"]), int(m["m"]), int(m["d"]))),
    ),
    (
        re.compile(
            rf"\b(?P<month>{_MONTHS})\.? (?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?:, (?P<y>\d{{4}}))?\b"
        ),
        _words(lambda m: sw.month_day(m["month"], int(m["d"]), m["y"])),
    ),
    (
        re.compile(
            r"\b(?P<h>[01]?\d|2[0-3]):(?P<min>[0-5]\d)(?: ?(?P<ap>[AaPp])\.?[Mm]\.?(?!\w))?"
        ),
        _words(lambda m: sw.clock(int(m["h"]), int(m["min"]), m["ap"])),
    ),
    (
        re.compile(r"\b(?P<h>1[0-2]|0?[1-9]) ?(?P<ap>[AaPp])\.?[Mm]\b\.?"),
        _words(lambda m: sw.clock(int(m["h"]), 0, m["ap"])),
    ),
    (
        re.compile(
            rf"(?P<neg>-)?(?P<sym>[{_CURRENCY_SYMBOLS}]) ?(?P<n>{_NUM})"
            rf"(?: (?P<scale>thousand|million|billion|trillion)\b)?"
        ),
        _words(lambda m: sw.money(m["n"], sw.CURRENCY_SYMBOLS[m["sym"]], m["scale"], m["neg"])),
    ),
    (
        re.compile(rf"(?P<n>{_NUM}) ?(?P<code>{'|'.join(sw.CURRENCY_CODES)})\b"),
        _words(lambda m: sw.money(m["n"], sw.CURRENCY_CODES[m["code"]], None, None)),
    ),
    (re.compile(r"\b(?P<n>\d+)(?P<suffix>st|nd|rd|th)\b"), _words(lambda m: sw.ordinal(m["n"]))),
    (
        re.compile(r"(?<![\w.])(?P<a>\d{1,3})/(?P<b>\d{1,3})(?![\w/])"),
        _words(lambda m: sw.fraction(int(m["a"]), int(m["b"]))),
    ),
    (re.compile(r"(?<![\w.])(?:1[1-9]|20)\d0s\b"), _words(lambda m: sw.year(m.group()))),
    (
        re.compile(rf"(?<![\w.])(?P<neg>[-−])?(?P<n>{_NUM}) ?(?P<unit>{_UNIT_NAMES})(?![\w])"),
        _words(lambda m: sw.quantity(m["n"], m["unit"], m["neg"])),
    ),
    (
        re.compile(
            r"(?:(?<=\bin )|(?<=\bsince )|(?<=\byear )|(?<=\buntil )|(?<=\bby ))"
            r"(?P<y>1[1-9]\d\d|20\d\d)s?\b",
            re.I,
        ),
        _words(lambda m: sw.year(m.group())),
    ),
    (
        re.compile(rf"(?<![\w.])(?:(?<=\s)|(?<=^)|(?<=\())[-−](?={_NUM})(?P<n>{_NUM})"),
        _words(lambda m: ["minus", *sw.cardinal(m["n"])]),
    ),
    (re.compile(rf"{_NUM}"), _words(lambda m: sw.cardinal(m.group()))),
    # words
    (
        re.compile(rf"(?<!\w)(?:{_ABBREVIATIONS})(?!\w)"),
        _words(lambda m: sw.ABBREVIATIONS[m.group()].split()),
    ),
    (re.compile(r"(?P<b>[^\W\d_])\^(?P<e>\d+|\w)"), _words(lambda m: sw.power(m["b"], m["e"]))),
    (re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*"), _words(lambda m: [m.group()])),
    # symbols and punctuation
    (re.compile(r"[.!?…]+(?=\s|$|[\"')\]*_])|\n[ \t]*\n|[.!?]+\Z"), _sentence_end),
    (re.compile(r"\n"), _pause(".")),
    (re.compile(r"[,;:]"), _pause(",")),
    (re.compile(r"(?<=\s)[-–—](?=\s)|[–—]|[()]"), _pause(",")),
    (
        re.compile(r"(?<=\d)[ \t]*/[ \t]*(?=\d)|[=<>≤≥≠≈±×÷^+]"),
        _words(lambda m: sw.SYMBOLS[m.group().strip()].split()),
    ),
    (re.compile(r"[&%#@°π∞√→←∑∫∆]"), _words(lambda m: sw.SYMBOLS[m.group()].split())),
]
