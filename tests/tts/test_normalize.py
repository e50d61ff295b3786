"""Table tests for speech normalisation: the spoken text and where each word came from."""

import pytest

from tts.normalize import normalize

# (written, spoken, the original text behind each group of spoken words, in order)
CASES = [
    # markdown
    ("# Results", "Results.", ["Results"]),
    ("## Step 2: mix", "Step two, mix.", ["Step", "2", "mix"]),
    (
        "This is **bold** and *italic*.",
        "This is bold and italic.",
        ["This", "is", "bold", "and", "italic"],
    ),
    (
        "Use __underline__ and ~~strike~~ text",
        "Use underline and strike text",
        ["Use", "underline", "and", "strike", "text"],
    ),
    ("- apples\n- pears", "apples. pears", ["apples", "pears"]),
    ("1. Preheat\n2. Bake", "one, Preheat. two, Bake", ["1", "Preheat", "2", "Bake"]),
    ("> quoted words", "quoted words", ["quoted", "words"]),
    (
        "| Name | Age |\n|---|---|\n| Ann | 30 |",
        "Name, Age. Ann, thirty.",
        ["Name", "Age", "Ann", "30"],
    ),
    (
        "See [the guide](https://example.com/guide) now",
        "See the guide now",
        ["See", "the", "guide", "now"],
    ),
    ("![a cat](cat.png) sits", "a cat sits", ["a", "cat", "sits"]),
    ("First line\n\nSecond line", "First line. Second line", ["First", "line", "Second", "line"]),
    ("Above\n---\nBelow", "Above. Below", ["Above", "Below"]),
    # code
    ("Run `make test` first", "Run make test first", ["Run", "`make test`", "first"]),
    (
        "Call `get_user_name()` here",
        "Call get user name here",
        ["Call", "`get_user_name()`", "here"],
    ),
    (
        "```python\nprint('hi')\n```\nThen stop.",
        "code block. Then stop.",
        ["```python\nprint('hi')\n```", "Then", "stop"],
    ),
    ("Set `maxRetries` to 3", "Set max Retries to three", ["Set", "`maxRetries`", "to", "3"]),
    # math
    ("$\\frac{1}{2}$", "one half", ["$\\frac{1}{2}$"]),
    ("$x^2$", "x squared", ["$x^2$"]),
    ("$\\sqrt{16} = 4$", "the square root of sixteen equals four", ["$\\sqrt{16} = 4$"]),
    ("$a \\times b$", "a times b", ["$a \\times b$"]),
    ("\\(x \\leq 5\\)", "x is less than or equal to five", ["\\(x \\leq 5\\)"]),
    ("$$\\frac{a}{b}$$", "a over b", ["$$\\frac{a}{b}$$"]),
    ("$x_1 + x_2$", "x sub one plus x sub two", ["$x_1 + x_2$"]),
    ("$\\pi r^2$", "pi r squared", ["$\\pi r^2$"]),
    ("3 ≤ 4", "three is less than or equal to four", ["3", "≤", "4"]),
    ("5 × 6 = 30", "five times six equals thirty", ["5", "×", "6", "=", "30"]),
    ("7 * 6 = 42", "seven times six equals forty two", ["7", "*", "6", "=", "42"]),
    ("x ≠ y", "x is not equal to y", ["x", "≠", "y"]),
    ("10 ÷ 2", "ten divided by two", ["10", "÷", "2"]),
    ("a ≈ b", "a is approximately b", ["a", "≈", "b"]),
    ("x^3 grows", "x cubed grows", ["x^3", "grows"]),
    ("10 - 3 = 7", "ten minus three equals seven", ["10", "-", "3", "=", "7"]),
    ("±2", "plus or minus two", ["±", "2"]),
    ("2 + 2 = 4", "two plus two equals four", ["2", "+", "2", "=", "4"]),
    # url
    (
        "Go to https://www.example.com today",
        "Go to w w w dot example dot com today",
        ["Go", "to", "https://www.example.com", "today"],
    ),
    ("Visit www.python.org.", "Visit w w w dot python dot org.", ["Visit", "www.python.org"]),
    (
        "Docs: https://docs.example.com/a/b",
        "Docs, docs dot example dot com slash a slash b",
        ["Docs", "https://docs.example.com/a/b"],
    ),
    # email
    (
        "Write to info@example.com",
        "Write to info at example dot com",
        ["Write", "to", "info@example.com"],
    ),
    (
        "Ask jane.doe@mail.example.org now",
        "Ask jane dot doe at mail dot example dot org now",
        ["Ask", "jane.doe@mail.example.org", "now"],
    ),
    # units
    ("It is 5 km away", "It is five kilometres away", ["It", "is", "5 km", "away"]),
    (
        "Add 250 g of flour",
        "Add two hundred and fifty grams of flour",
        ["Add", "250 g", "of", "flour"],
    ),
    ("50% off", "fifty percent off", ["50%", "off"]),
    ("It was 20°C", "It was twenty degrees Celsius", ["It", "was", "20°C"]),
    ("3.5 kg", "three point five kilograms", ["3.5 kg"]),
    ("100 km/h", "one hundred kilometres per hour", ["100 km/h"]),
    ("1 km", "one kilometre", ["1 km"]),
    ("16 GB of memory", "sixteen gigabytes of memory", ["16 GB", "of", "memory"]),
    ("Wait 10 min", "Wait ten minutes", ["Wait", "10 min"]),
    # money
    ("$5", "five dollars", ["$5"]),
    (
        "$1,234.56",
        "one thousand two hundred and thirty four dollars and fifty six cents",
        ["$1,234.56"],
    ),
    ("€20", "twenty euros", ["€20"]),
    ("£3.50", "three pounds and fifty pence", ["£3.50"]),
    ("$1", "one dollar", ["$1"]),
    ("$2.5 million", "two point five million dollars", ["$2.5 million"]),
    ("100 USD", "one hundred dollars", ["100 USD"]),
    # date
    ("2024-03-15", "March fifteenth twenty twenty four", ["2024-03-15"]),
    ("March 3, 2025", "March third twenty twenty five", ["March 3, 2025"]),
    ("On July 4th we rest", "On July fourth we rest", ["On", "July 4th", "we", "rest"]),
    ("in 1999", "in nineteen ninety nine", ["in", "1999"]),
    ("the 1980s", "the nineteen eighties", ["the", "1980s"]),
    # time
    ("at 14:30", "at fourteen thirty", ["at", "14:30"]),
    ("at 9:05 pm", "at nine oh five P M", ["at", "9:05 pm"]),
    ("at 10:00", "at ten o'clock", ["at", "10:00"]),
    ("at 7 am", "at seven A M", ["at", "7 am"]),
    # ordinal
    ("1st place", "first place", ["1st", "place"]),
    ("the 22nd", "the twenty second", ["the", "22nd"]),
    ("3rd time", "third time", ["3rd", "time"]),
    # number
    ("42", "forty two", ["42"]),
    ("1,000,000", "one million", ["1,000,000"]),
    ("3.14", "three point one four", ["3.14"]),
    ("-7", "minus seven", ["-7"]),
    ("3/4 cup", "three quarters cup", ["3/4", "cup"]),
    ("1/2", "one half", ["1/2"]),
    ("pages 3-5", "pages three to five", ["pages", "3", "-", "5"]),
    ("2 of 10", "two of ten", ["2", "of", "10"]),
    # abbrev
    ("e.g. this", "for example this", ["e.g.", "this"]),
    ("i.e. that", "that is that", ["i.e.", "that"]),
    ("Dr. Who", "Doctor Who", ["Dr.", "Who"]),
    ("cats vs. dogs", "cats versus dogs", ["cats", "vs.", "dogs"]),
    ("Mr. Smith", "Mister Smith", ["Mr.", "Smith"]),
    ("No. 5", "number five", ["No.", "5"]),
    # emoji
    ("Great job 🎉", "Great job", ["Great", "job"]),
    ("I ❤️ it", "I it", ["I", "it"]),
    ("Done ✅!", "Done!", ["Done"]),
    # symbols
    ("Tom & Jerry", "Tom and Jerry", ["Tom", "&", "Jerry"]),
    # plain
    ("It's fine", "It's fine", ["It's", "fine"]),
    ("Hello, world!", "Hello, world!", ["Hello", "world"]),
]


def _source_groups(text: str, spoken) -> list[str]:
    groups, last = [], None
    for span in spoken.spans:
        key = (span.source_start, span.source_end)
        if key != last:
            groups.append(text[span.source_start : span.source_end])
            last = key
    return groups


@pytest.mark.parametrize(("written", "expected", "sources"), CASES)
def test_normalize(written: str, expected: str, sources: list[str]) -> None:
    spoken = normalize(written)
    assert spoken.text == expected
    assert _source_groups(written, spoken) == sources


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize(("written", "expected", "sources"), CASES)
def test_spans_cover_every_spoken_word_in_order(
    written: str, expected: str, sources: list[str]
) -> None:
    spoken = normalize(written)
    assert [spoken.text[s.start : s.end] for s in spoken.spans] == spoken.text.replace(
        ",", " "
    ).replace(".", " ").replace("!", " ").replace("?", " ").split()
    starts = [s.source_start for s in spoken.spans]
    assert starts == sorted(starts)
    assert all(0 <= s.source_start < s.source_end <= len(written) for s in spoken.spans)


def test_offset_shifts_source_spans() -> None:
    text = "It costs $5."
    plain, shifted = normalize(text), normalize(text, offset=100)
    assert [(s.source_start + 100, s.source_end + 100) for s in plain.spans] == [
        (s.source_start, s.source_end) for s in shifted.spans
    ]


def test_source_span_of_a_spoken_position() -> None:
    spoken = normalize("Pay $5 now")
    position = spoken.text.index("dollars")
    assert spoken.source_span(position) == (4, 6)
    assert spoken.source_span(len(spoken.text)) is None
