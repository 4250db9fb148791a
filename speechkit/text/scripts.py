"""Letters a frontend cannot read: a clear :class:`~speechkit.errors.TextError` that names them,
instead of a crash or words silently left out of the speech.

A frontend reads some scripts (g2p_en: Latin letters; pypinyin: Chinese characters). Text in
another script (Cyrillic, Greek, kana, hangul...) has letters it has no pronunciation for; those
are reported with their Unicode names, and the user is told to write the words in a script the
frontend reads or to remove them. Symbols, emoji, digits and punctuation are not letters and are
left to the frontend's normalisation.
"""
from __future__ import annotations

import unicodedata
from typing import Callable

from speechkit.errors import TextError

#: Latin letters that Unicode does not decompose into an ASCII letter and an accent, spelled in
#: ASCII as English readers would say them.
LATIN_SPELLINGS: dict[str, str] = {
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
    "ł": "l", "Ł": "L", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "ı": "i", "ŋ": "ng", "Ŋ": "NG",
}
_LATIN_TABLE = str.maketrans(LATIN_SPELLINGS)
#: Chinese characters, for a regex character class: CJK Unified Ideographs with extensions A-H,
#: the compatibility ideographs, and 〇.
HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f〇"
_SHOWN = 5  # letters named in an error; the rest are counted


def ascii_latin(text: str) -> str:
    """``"café Straße"`` -> ``"cafe Strasse"``: accents dropped (NFD marks), the other Latin
    letters of :data:`LATIN_SPELLINGS` spelled in ASCII; letters of other scripts are kept."""
    decomposed = unicodedata.normalize("NFD", text.translate(_LATIN_TABLE))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def is_letter(char: str) -> bool:
    """Whether ``char`` is a letter of any script (Unicode category L*)."""
    return unicodedata.category(char).startswith("L")


def unreadable_letters(text: str, readable: Callable[[str], bool]) -> list[str]:
    """The distinct letters of ``text`` that ``readable`` rejects, in order of first appearance."""
    seen: dict[str, None] = {}
    for char in text:
        if char not in seen and is_letter(char) and not readable(char):
            seen[char] = None
    return list(seen)


def name_letters(letters: list[str]) -> str:
    """``"'П' (CYRILLIC CAPITAL LETTER PE), ..."``: the first few distinct letters with their
    Unicode names, and how many more there are."""
    distinct = list(dict.fromkeys(letters))
    named = ", ".join(f"{char!r} ({unicodedata.name(char, f'U+{ord(char):04X}')})" for char in distinct[:_SHOWN])
    return named + (f" and {len(distinct) - _SHOWN} more" if len(distinct) > _SHOWN else "")


def check_letters(text: str, readable: Callable[[str], bool], reader: str, reads: str) -> None:
    """Raise :class:`TextError` if ``text`` has letters ``readable`` rejects.

    Args:
        text: the text as the frontend is about to read it.
        readable: whether the frontend reads a letter.
        reader: who reads it, for the message (e.g. ``"The g2p_en frontend"``).
        reads: what it reads, for the message (e.g. ``"Latin letters"``).
    """
    letters = unreadable_letters(text, readable)
    if not letters:
        return
    raise TextError(
        f"{reader} cannot read the letters {name_letters(letters)} in {text!r}: it reads {reads}. "
        f"Write those words in {reads}, or remove them."
    )


def is_latin(char: str) -> bool:
    """Whether ``char`` is a Latin letter (``a``, ``é``, ``ß``, full-width ``Ａ``...)."""
    return is_letter(char) and unicodedata.name(char, "").startswith(("LATIN ", "FULLWIDTH LATIN "))
