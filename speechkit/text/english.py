"""English text normalization: spell out numbers, symbols and abbreviations as words.

Handles, in this order: abbreviations (``Mr.`` ``Dr.`` ``etc.`` ``e.g.`` ...), currency
(``$3.50`` -> "three dollars fifty cents"), times (``12:30`` ``9:00 pm``), percentages, ordinals
(``21st``), decades (``1990s``), digit strings read one by one (phone numbers, codes with a leading
zero, groups joined by hyphens), years (``1998`` -> "nineteen ninety-eight"), decimals
(``3.14`` -> "three point one four"), grouped and plain cardinals, and a few symbols (``&`` ``+``
``@`` ``=``). Numbers are spelled by ``num2words`` (American style: no "and" inside numbers).
"""
from __future__ import annotations

import re
import unicodedata

from speechkit.errors import MissingDependencyError

try:
    from num2words import num2words
except ImportError as error:  # pragma: no cover - exercised only without the text extra
    raise MissingDependencyError(
        "English normalization needs num2words: pip install 'num2words>=0.5.12,<1' "
        "(or pip install -e '.[text]')."
    ) from error

#: Abbreviation (as written, case-sensitive, with its period) -> spoken form.
ABBREVIATIONS: dict[str, str] = {
    "Mr.": "mister", "Mrs.": "missus", "Ms.": "miz", "Dr.": "doctor", "Prof.": "professor",
    "St.": "saint", "Jr.": "junior", "Sr.": "senior", "Mt.": "mount", "Ave.": "avenue",
    "Capt.": "captain", "Gen.": "general", "Lt.": "lieutenant", "Sgt.": "sergeant",
    "Co.": "company", "Corp.": "corporation", "Inc.": "incorporated", "Ltd.": "limited",
    "vs.": "versus", "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is",
    "approx.": "approximately", "dept.": "department", "Jan.": "January", "Feb.": "February",
    "Mar.": "March", "Apr.": "April", "Aug.": "August", "Sept.": "September", "Sep.": "September",
    "Oct.": "October", "Nov.": "November", "Dec.": "December",
}
#: Currency symbol -> (unit singular, unit plural, cent singular, cent plural).
CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yuan", "yuan", "fen", "fen"),
}
SYMBOLS: dict[str, str] = {"&": " and ", "+": " plus ", "@": " at ", "=": " equals ", "°": " degrees "}
SCALES = {"k": "thousand", "m": "million", "million": "million", "b": "billion", "bn": "billion",
          "billion": "billion", "trillion": "trillion", "thousand": "thousand"}

_ABBREVIATION_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True)) + r")"
)
_NO_RE = re.compile(r"\bNo\.\s*(?=\d)")
_CURRENCY_RE = re.compile(
    r"([$£€¥])\s?(\d[\d,]*)(?:\.(\d{1,2}))?(?:\s?(k|m|bn|b|thousand|million|billion|trillion)\b)?",
    re.IGNORECASE,
)
_TIME_RE = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)(?:\s*([ap])\.?\s?m\b\.?)?", re.IGNORECASE)
_AMPM_RE = re.compile(r"\b(\d{1,2})\s*([ap])\.?m\b\.?", re.IGNORECASE)
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECADE_RE = re.compile(r"\b(1\d|20)(\d)0(?:'?s)\b")
_SHORT_DECADE_RE = re.compile(r"(?<![\d$£€¥])'?([2-9])0'?s\b")
_DIGIT_GROUPS_RE = re.compile(r"(?<![\d.])\+?\d{2,}(?:[-\s]\d{2,}){1,}(?![\d.])")
_LEADING_ZERO_RE = re.compile(r"(?<![\d.,])0\d+(?![\d.,])")
_LONG_DIGITS_RE = re.compile(r"(?<![\d.,])\d{7,}(?![\d.,])")
_YEAR_RE = re.compile(r"(?<![\d.,$£€¥])(1[1-9]\d\d|20\d\d)(?![\d%]|\.\d|,\d)")
_DECIMAL_RE = re.compile(r"(?<![\d.])(-?)(\d[\d,]*)\.(\d+)")
_GROUPED_RE = re.compile(r"(?<!\d)\d{1,3}(?:,\d{3})+(?!\d)")
_NEGATIVE_RE = re.compile(r"(?<![\w])-(?=\d)")
_CARDINAL_RE = re.compile(r"\d+")
_SPACES_RE = re.compile(r"\s+")

_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def cardinal(number: int | str) -> str:
    """Spell an integer: ``123`` -> "one hundred twenty-three" (no "and")."""
    return num2words(int(number)).replace(" and ", " ").replace(",", "")


def ordinal(number: int | str) -> str:
    """Spell an ordinal: ``21`` -> "twenty-first"."""
    return num2words(int(number), to="ordinal").replace(" and ", " ").replace(",", "")


def year(number: int | str) -> str:
    """Read a year: ``1998`` -> "nineteen ninety-eight", ``2005`` -> "two thousand five"."""
    value = int(number)
    if 2000 <= value <= 2009:
        return cardinal(value)
    return num2words(value, to="year").replace(" and ", " ")


def digits(text: str) -> str:
    """Read a digit string one digit at a time: ``"0451"`` -> "zero four five one"."""
    return " ".join(_DIGIT_NAMES[int(char)] for char in text if char.isdigit())


def decimal(integer_part: str, fraction: str) -> str:
    """``("3", "14")`` -> "three point one four"."""
    return f"{cardinal(integer_part.replace(',', ''))} point {digits(fraction)}"


def _currency(match: re.Match[str]) -> str:
    unit, units, cent, cents = CURRENCIES[match.group(1)]
    amount = int(match.group(2).replace(",", ""))
    scale = match.group(4)
    if scale:  # "$5 million" -> "five million dollars"; "$2.5bn" is handled as a decimal below
        return f" {cardinal(amount)} {SCALES[scale.lower()]} {units} "
    words = f"{cardinal(amount)} {unit if amount == 1 else units}"
    if match.group(3):
        fraction = int(match.group(3).ljust(2, "0"))
        if fraction:
            words += f" {cardinal(fraction)} {cent if fraction == 1 else cents}"
    return f" {words} "


def _currency_decimal_scale(text: str) -> str:
    pattern = re.compile(r"([$£€¥])(\d+)\.(\d+)\s?(k|m|bn|b|million|billion|trillion)\b", re.IGNORECASE)
    return pattern.sub(
        lambda m: f" {decimal(m.group(2), m.group(3))} {SCALES[m.group(4).lower()]} {CURRENCIES[m.group(1)][1]} ",
        text,
    )


def _time(match: re.Match[str]) -> str:
    hour, minute, half = int(match.group(1)), int(match.group(2)), match.group(3)
    if minute == 0:
        words = f"{cardinal(hour)}" + ("" if half else " o'clock")
    elif minute < 10:
        words = f"{cardinal(hour)} oh {cardinal(minute)}"
    else:
        words = f"{cardinal(hour)} {cardinal(minute)}"
    if half:
        words += f" {half.upper()} M"
    return f" {words} "


def _decade(match: re.Match[str]) -> str:
    century, decade = match.group(1), int(match.group(2))
    if decade == 0:
        return f"{cardinal(century)} hundreds" if century != "20" else "two thousands"
    tens = cardinal(decade * 10)
    return f"{cardinal(century)} {tens[:-1]}ies"


def normalize_english(text: str) -> str:
    """Spell out numbers, symbols and abbreviations of English ``text`` (punctuation is kept)."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    # an abbreviation that ends the text also ends the sentence: keep its period
    text = re.sub(r"\b(etc|Inc|Ltd|Co|Corp|Jr|Sr)\.\s*$", lambda m: f"{m.group(1)}. .", text)
    text = _ABBREVIATION_RE.sub(lambda m: ABBREVIATIONS[m.group(1)], text)
    text = _NO_RE.sub("number ", text)
    text = _currency_decimal_scale(text)
    text = _CURRENCY_RE.sub(_currency, text)
    text = _TIME_RE.sub(_time, text)
    text = _AMPM_RE.sub(lambda m: f" {cardinal(m.group(1))} {m.group(2).upper()} M ", text)
    text = _PERCENT_RE.sub(lambda m: f" {m.group(1)} percent ", text)
    text = _ORDINAL_RE.sub(lambda m: f" {ordinal(m.group(1))} ", text)
    text = _DECADE_RE.sub(_decade, text)
    text = _SHORT_DECADE_RE.sub(lambda m: f"{cardinal(int(m.group(1)) * 10)[:-1]}ies", text)
    text = _DIGIT_GROUPS_RE.sub(lambda m: " " + ", ".join(digits(g) for g in re.split(r"[-\s]", m.group(0))) + " ", text)
    text = _LEADING_ZERO_RE.sub(lambda m: f" {digits(m.group(0))} ", text)
    text = _LONG_DIGITS_RE.sub(lambda m: f" {digits(m.group(0))} ", text)
    text = _YEAR_RE.sub(lambda m: f" {year(m.group(1))} ", text)
    text = _DECIMAL_RE.sub(lambda m: f" {'minus ' if m.group(1) else ''}{decimal(m.group(2), m.group(3))} ", text)
    text = _GROUPED_RE.sub(lambda m: f" {cardinal(m.group(0).replace(',', ''))} ", text)
    text = _NEGATIVE_RE.sub(" minus ", text)
    text = _CARDINAL_RE.sub(lambda m: f" {cardinal(m.group(0))} ", text)
    for symbol, words in SYMBOLS.items():
        text = text.replace(symbol, words)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return _SPACES_RE.sub(" ", text).strip()
