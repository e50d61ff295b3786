"""How written things are said: numbers, money, units, dates, times, URLs, symbols, LaTeX.

Each function returns a list of plain words (no punctuation, so the synthesiser adds no pauses
inside a number). English only, as is the default espeak-ng voice set we map onto.
"""

from __future__ import annotations

import calendar
import re

from num2words import num2words

MONTHS = list(calendar.month_name)[1:]
_DIGITS = "zero one two three four five six seven eight nine".split()

# symbol: (singular, plural, minor singular, minor plural)
CURRENCY_SYMBOLS = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
CURRENCY_CODES = {
    "USD": CURRENCY_SYMBOLS["$"],
    "EUR": CURRENCY_SYMBOLS["€"],
    "GBP": CURRENCY_SYMBOLS["£"],
}

# unit: (singular, plural). Ambiguous short words ("in", "a", "s" alone after a word) are left out.
UNITS = {
    "%": ("percent", "percent"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "km/h": ("kilometre per hour", "kilometres per hour"),
    "m/s": ("metre per second", "metres per second"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometre", "kilometres"),
    "cm": ("centimetre", "centimetres"),
    "mm": ("millimetre", "millimetres"),
    "m": ("metre", "metres"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"),
    "mi": ("mile", "miles"),
    "ml": ("millilitre", "millilitres"),
    "mL": ("millilitre", "millilitres"),
    "L": ("litre", "litres"),
    "ms": ("millisecond", "milliseconds"),
    "s": ("second", "seconds"),
    "sec": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"),
    "mAh": ("milliamp hour", "milliamp hours"),
}

ABBREVIATIONS = {
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "vs.": "versus",
    "vs": "versus",
    "approx.": "approximately",
    "Dr.": "Doctor",
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "Ms.": "Miz",
    "Prof.": "Professor",
    "Jr.": "Junior",
    "Sr.": "Senior",
    "St.": "Saint",
    "Inc.": "Incorporated",
    "Ltd.": "Limited",
    "No.": "number",
    "Fig.": "figure",
    "Eq.": "equation",
    "a.m.": "A M",
    "p.m.": "P M",
}

SYMBOLS = {
    "=": "equals",
    "<": "is less than",
    ">": "is greater than",
    "≤": "is less than or equal to",
    "≥": "is greater than or equal to",
    "≠": "is not equal to",
    "≈": "is approximately",
    "±": "plus or minus",
    "×": "times",
    "x": "times",
    "*": "times",
    "·": "times",
    "÷": "divided by",
    "/": "divided by",
    "+": "plus",
    "-": "minus",
    "−": "minus",
    "^": "to the power of",
    "&": "and",
    "%": "percent",
    "#": "number",
    "@": "at",
    "°": "degrees",
    "π": "pi",
    "∞": "infinity",
    "√": "the square root of",
    "→": "to",
    "←": "from",
    "∑": "the sum of",
    "∫": "the integral of",
    "∆": "delta",
}

LATEX_COMMANDS = {
    "times": "times", "cdot": "times", "div": "divided by", "pm": "plus or minus",
    "mp": "minus or plus", "le": "is less than or equal to", "leq": "is less than or equal to",
    "ge": "is greater than or equal to", "geq": "is greater than or equal to",
    "ne": "is not equal to", "neq": "is not equal to", "approx": "is approximately",
    "equiv": "is equivalent to", "lt": "is less than", "gt": "is greater than",
    "infty": "infinity", "to": "to", "rightarrow": "to", "Rightarrow": "implies",
    "sum": "the sum of", "prod": "the product of", "int": "the integral of", "lim": "the limit",
    "sin": "sine", "cos": "cosine", "tan": "tangent", "log": "log", "ln": "natural log",
    "cdots": "and so on", "ldots": "and so on", "dots": "and so on", "circ": "degrees",
    "percent": "percent", "%": "percent",
    **{g: g for g in "alpha beta gamma delta epsilon theta lambda mu pi rho sigma tau phi".split()},
    "omega": "omega",
}  # fmt: skip
_LATEX_SILENT = {"left", "right", ",", ";", "!", " ", "quad", "qquad", "displaystyle", "big", "Big"}
_LATEX_TEXT = {"text", "mathrm", "mathbf", "mathit", "operatorname", "textbf", "mathbb", "boxed"}


def _spell(words: str) -> list[str]:
    """num2words output as plain words: no commas, no hyphens."""
    return words.replace(",", "").replace("-", " ").split()


def cardinal(number: str) -> list[str]:
    """'1,234.5' -> one thousand two hundred and thirty four point five."""
    whole, _, decimals = number.replace(",", "").partition(".")
    words = _spell(num2words(int(whole or "0")))
    if decimals:
        words += ["point", *(_DIGITS[int(d)] for d in decimals)]
    return words


def ordinal(number: str | int) -> list[str]:
    return _spell(num2words(int(number), to="ordinal"))


def year(text: str) -> list[str]:
    """'1999' -> nineteen ninety nine; '1990s' -> nineteen nineties."""
    words = _spell(num2words(int(text.rstrip("s")), to="year"))
    if text.endswith("s"):
        last = words[-1]
        words[-1] = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return words


def date(year_number: int, month: int, day: int) -> list[str]:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return [*cardinal(str(year_number)), *cardinal(str(month)), *cardinal(str(day))]
    return [MONTHS[month - 1], *ordinal(day), *year(str(year_number))]


def month_day(month: str, day: int, year_text: str | None) -> list[str]:
    return [month, *ordinal(day), *(year(year_text) if year_text else [])]


def clock(hour: int, minute: int, am_pm: str | None) -> list[str]:
    """14:30 -> fourteen thirty; 9:05 pm -> nine oh five P M; 10:00 -> ten o'clock."""
    words = cardinal(str(hour))
    if minute == 0:
        words += [] if am_pm else ["o'clock"]
    elif minute < 10:
        words += ["oh", *cardinal(str(minute))]
    else:
        words += cardinal(str(minute))
    if am_pm:
        words += ["A", "M"] if am_pm.lower() == "a" else ["P", "M"]
    return words


def money(
    amount: str, names: tuple[str, str, str, str], scale: str | None, negative: str | None
) -> list[str]:
    """'$1,234.56' -> one thousand ... and fifty six cents; '$5 million' -> five million dollars."""
    sign = ["minus"] if negative else []
    major, plural, minor, minor_plural = names
    if scale:
        return [*sign, *cardinal(amount), scale, plural]
    whole, _, cents = amount.replace(",", "").partition(".")
    words = [*sign, *cardinal(whole), major if whole == "1" else plural]
    if cents and int(cents):
        cents_value = int(cents.ljust(2, "0")[:2])
        words += ["and", *cardinal(str(cents_value)), minor if cents_value == 1 else minor_plural]
    return words


def quantity(number: str, unit: str, negative: str | None) -> list[str]:
    singular, plural = UNITS[unit]
    name = singular if number == "1" else plural
    return [*(["minus"] if negative else []), *cardinal(number), *name.split()]


def fraction(numerator: int, denominator: int) -> list[str]:
    """1/2 -> one half; 3/4 -> three quarters; 2/3 -> two thirds; 7/12 -> seven over twelve."""
    top = cardinal(str(numerator))
    if denominator == 2:
        return [*top, "half" if numerator == 1 else "halves"]
    if denominator == 4:
        return [*top, "quarter" if numerator == 1 else "quarters"]
    if 3 <= denominator <= 10:
        name = ordinal(denominator)
        return [*top, *name[:-1], name[-1] + ("" if numerator == 1 else "s")]
    return [*top, "over", *cardinal(str(denominator))]


def power(base: str, exponent: str) -> list[str]:
    exponent_words = cardinal(exponent) if exponent.isdigit() else [exponent]
    if exponent_words == ["two"]:
        return [base, "squared"]
    if exponent_words == ["three"]:
        return [base, "cubed"]
    return [base, "to", "the", "power", "of", *exponent_words]


def _address_words(text: str) -> list[str]:
    words: list[str] = []
    for token in re.findall(r"[^\W\d_]+|\d+|[./@:?=&#-]", text):
        if token.isdigit():
            words += cardinal(token) if len(token) <= 4 else [_DIGITS[int(d)] for d in token]
        elif token.lower() == "www":
            words += ["w", "w", "w"]
        elif token in {".", "/", "@"}:
            words.append({".": "dot", "/": "slash", "@": "at"}[token])
        elif token.isalpha():
            words.append(token)
    return words


def url(text: str) -> list[str]:
    """'https://docs.example.com/guide' -> docs dot example dot com slash guide."""
    return _address_words(re.sub(r"^https?://", "", text).rstrip("/"))


def email(text: str) -> list[str]:
    return _address_words(text)


def identifier(text: str) -> list[str]:
    """snake_case and camelCase names as separate words."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text.replace("_", " "))
    return spaced.split()


def latex(source: str) -> list[str]:
    """A LaTeX expression read aloud, e.g. \\frac{1}{2} -> one half, x_1 -> x sub one."""
    return _LatexReader(source, code=False).read_until(None)


def code(source: str) -> list[str]:
    """Inline code read aloud: names split into words, numbers and operators said."""
    return _LatexReader(source, code=True).read_until(None)


class _LatexReader:
    def __init__(self, source: str, code: bool) -> None:
        self.source = source
        self.position = 0
        # in code, `_` and `^` belong to names; in math they are subscripts and powers
        name = r"[^\W\d]\w*" if code else r"[^\W\d_][^\W_]*"
        self._name = re.compile(r"\d+(?:\.\d+)?|" + name)
        self._code = code

    def read_until(self, closing: str | None) -> list[str]:
        words: list[str] = []
        while self.position < len(self.source) and self.source[self.position] != closing:
            words += self.token()
        self.position += 1  # past the closing brace
        return words

    def group(self) -> list[str]:
        while self.position < len(self.source) and self.source[self.position].isspace():
            self.position += 1
        if self.position < len(self.source) and self.source[self.position] == "{":
            self.position += 1
            return self.read_until("}")
        return self.token()

    def token(self) -> list[str]:
        source, start = self.source, self.position
        char = source[start]
        if char == "\\" and not self._code:
            name = re.match(r"\\([A-Za-z]+|.)", source[start:])
            self.position += len(name.group()) if name else 1
            return self.command(name.group(1) if name else "")
        self.position += 1
        if not self._code and char in "{^_":
            return self.structure(char)
        match = self._name.match(source, start)
        if match:
            self.position = match.end()
            text = match.group()
            return cardinal(text) if text[0].isdigit() else identifier(text)
        return SYMBOLS.get(char, "").split()

    def structure(self, char: str) -> list[str]:
        """A group, a power or a subscript."""
        if char == "{":
            return self.read_until("}")
        if char == "_":
            return ["sub", *self.group()]
        exponent = self.group()
        if exponent in (["two"], ["three"]):
            return ["squared" if exponent == ["two"] else "cubed"]
        return ["to", "the", "power", "of", *exponent]

    def command(self, name: str) -> list[str]:
        if name in {"frac", "dfrac", "tfrac"}:
            return _fraction_words(self.group(), self.group())
        if name == "sqrt":
            return ["the", "square", "root", "of", *self.group()]
        if name in _LATEX_TEXT:
            return self.group()
        if name in _LATEX_SILENT:
            return []
        return LATEX_COMMANDS.get(name, name).split()


def _fraction_words(top: list[str], bottom: list[str]) -> list[str]:
    small = {" ".join(cardinal(str(n))): n for n in range(1, 13)}
    numerator, denominator = small.get(" ".join(top)), small.get(" ".join(bottom))
    if numerator and denominator and denominator <= 10:
        return fraction(numerator, denominator)
    return [*top, "over", *bottom]
