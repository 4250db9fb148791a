"""The one table of language codes and their integer IDs (per-phone language IDs for the models).

Every phone token carries its language as a prefix (``"zh:ang4"``, ``"en:AH0"``); boundary and
special tokens (``<sp>``, ``<sil>``, ``<pad>``, ``<unk>``) belong to the language-neutral ``"-"``.
The per-phone language ID of a token is therefore derived from the token itself
(:func:`token_language_id`) and never stored in a separate file.
"""
from __future__ import annotations

from typing import Sequence

from speechkit.errors import TextError

#: Language-neutral tokens (boundaries, specials).
NEUTRAL = "-"
#: Language code -> ID. Append new languages at the end so existing IDs never change.
LANGUAGES: dict[str, int] = {NEUTRAL: 0, "en": 1, "zh": 2}


def language_id(lang: str) -> int:
    """The integer ID of language ``lang``.

    Raises:
        TextError: unknown language (the message lists the known ones).
    """
    try:
        return LANGUAGES[lang]
    except KeyError:
        raise TextError(
            f"Unknown language {lang!r}; known: {', '.join(LANGUAGES)}. "
            "Add it at the end of speechkit.text.languages.LANGUAGES."
        ) from None


def token_language(token: str) -> str:
    """The language of a phone-table token: the prefix before ``:``, or ``"-"`` for specials."""
    lang, sep, _ = token.partition(":")
    return lang if sep else NEUTRAL


def token_language_id(token: str) -> int:
    """The language ID of a phone-table token (``"zh:ang4"`` -> ID of ``zh``; ``<sil>`` -> 0)."""
    return language_id(token_language(token))


def token_language_ids(tokens: Sequence[str]) -> list[int]:
    """Per-phone language IDs of a token sequence."""
    return [token_language_id(token) for token in tokens]
