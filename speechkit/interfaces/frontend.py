"""Text frontend (G2P): raw text -> normalized text -> language-tagged phones."""
from __future__ import annotations

import abc
import dataclasses
from typing import Sequence

from speechkit.interfaces.base import Component

#: Boundary tokens shared by all languages (punctuation becomes these).
PAUSE = "<sp>"  # comma-like pause
BOUNDARY = "<sil>"  # sentence-final boundary


@dataclasses.dataclass(frozen=True)
class Phone:
    """One phone and the language it belongs to.

    ``symbol`` is the language's own phone (``"AH0"``, ``"zh"``, ``"ang4"``) or a boundary token
    (:data:`PAUSE`, :data:`BOUNDARY`, language ``"-"``). ``token`` is the entry in the shared
    phone table: ``"<lang>:<symbol>"`` for phones, the bare symbol for boundaries.
    """

    symbol: str
    lang: str

    @property
    def token(self) -> str:
        return self.symbol if self.lang == "-" else f"{self.lang}:{self.symbol}"

    @classmethod
    def from_token(cls, token: str) -> "Phone":
        lang, sep, symbol = token.partition(":")
        return cls(symbol, lang) if sep else cls(token, "-")


PhoneSequence = list[Phone]


class Frontend(Component):
    """Converts text in the languages it supports to a :data:`PhoneSequence`.

    Attributes:
        languages: language codes handled (e.g. ``("en",)`` or ``("en", "zh")``).
    """

    @property
    @abc.abstractmethod
    def languages(self) -> Sequence[str]: ...

    @abc.abstractmethod
    def normalize(self, text: str, lang: str | None = None) -> str:
        """Spell out numbers/symbols, unify punctuation width, etc. ``lang=None``: detect."""

    @abc.abstractmethod
    def phonemize(self, text: str, lang: str | None = None) -> PhoneSequence:
        """Normalize then convert to phones. ``lang=None`` means detect (mixed text is split into
        language runs).

        Raises:
            speechkit.errors.TextError: empty text, nothing pronounceable, unsupported language.
        """
