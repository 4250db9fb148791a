"""Text normalisation for scoring English ASR output against a reference (both sides alike).

Lowercase, numbers spelled out (``15`` -> ``fifteen``, ``3.5`` -> ``three point five``,
``21st`` -> ``twenty first``, ``1,000`` -> ``one thousand``, ``50%`` -> ``fifty percent``),
hyphens split words, punctuation removed (apostrophes inside words are kept: ``don't``), spaces
collapsed. Numbers go through num2words, so "15" and "fifteen" count as the same word.
"""
from __future__ import annotations

import re
import unicodedata

_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(%)?(?!\w)")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_NON_WORD = re.compile(r"[^\w' ]+")
_STRAY_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def _spell_number(match: re.Match[str]) -> str:
    from num2words import num2words

    integer, fraction, ordinal, percent = match.groups()
    value = int(integer.replace(",", ""))
    if ordinal and not fraction:
        words = num2words(value, to="ordinal")
    else:
        words = num2words(value)
        if fraction:
            words += " point " + " ".join(num2words(int(digit)) for digit in fraction)
    if percent:
        words += " percent"
    return f" {words} "


def normalize_english(text: str) -> str:
    """``text`` -> lowercase words separated by single spaces, numbers spelled out, no punctuation."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    text = _NUMBER.sub(_spell_number, text)
    text = text.replace("&", " and ").replace("-", " ").replace("%", " percent ")
    text = _NON_WORD.sub(" ", text).replace("_", " ")
    text = _STRAY_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())
