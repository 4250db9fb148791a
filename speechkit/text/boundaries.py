"""Punctuation -> pause / boundary tokens, shared by every frontend.

Clause punctuation (commas, semicolons, colons, dashes, brackets, quotes...) becomes a pause
(:data:`~speechkit.interfaces.frontend.PAUSE`, ``<sp>``); sentence-final punctuation
(``. ! ? 。 ！ ？ …``) becomes a boundary (``<sil>``). :func:`collapse_boundaries` merges runs of
them (a boundary wins over a pause) and drops leading ones, so phone sequences never start with
a pause.
"""
from __future__ import annotations

from typing import Iterable

from speechkit.interfaces.frontend import BOUNDARY, PAUSE, Phone

SENTENCE_END = frozenset(".!?。！？…")
CLAUSE_BREAK = frozenset(",;:、，；：—–-(){}[]（）【】《》〈〉「」『』\"“”‘’«»/|~·")
NEUTRAL = "-"
PAUSE_PHONE = Phone(PAUSE, NEUTRAL)
BOUNDARY_PHONE = Phone(BOUNDARY, NEUTRAL)


def punctuation_phone(char: str) -> Phone | None:
    """``<sil>`` for sentence-final punctuation, ``<sp>`` for clause punctuation, else None."""
    if char in SENTENCE_END:
        return BOUNDARY_PHONE
    if char in CLAUSE_BREAK:
        return PAUSE_PHONE
    return None


def is_boundary(phone: Phone) -> bool:
    """Whether ``phone`` is a pause or boundary token."""
    return phone.lang == NEUTRAL and phone.symbol in (PAUSE, BOUNDARY)


def collapse_boundaries(phones: Iterable[Phone]) -> list[Phone]:
    """Merge adjacent pause/boundary tokens (``<sil>`` wins) and drop leading ones."""
    result: list[Phone] = []
    for phone in phones:
        if not is_boundary(phone):
            result.append(phone)
        elif result and is_boundary(result[-1]):
            if phone.symbol == BOUNDARY:
                result[-1] = BOUNDARY_PHONE
        elif result:
            result.append(phone)
    return result
