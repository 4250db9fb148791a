"""Split mixed-script text into language runs: ``"我今天用 iPhone 15 打电话"`` ->
``[("我今天用", "zh"), ("iPhone 15", "en"), ("打电话", "zh")]``.

Han characters are ``zh``, Latin letters (with apostrophes inside words) are ``en``. Everything
else is script-ambiguous and attaches to a neighbour:

* numbers (with their ``. , : % ¥ $ € £ °`` and signs) join a Latin word written right before
  them (``iPhone15``), else a Han character written right after them (``15个``, ``1998年``) or
  right before them (``第3``), else the Latin word before them (even
  across a space: ``iPhone 15``), else the Han text before them, else the run after them; a text of
  numbers alone takes ``default_lang``;
* punctuation and spaces stay with the run before them (leading ones go to the first run).
"""
from __future__ import annotations

import dataclasses
import re

from speechkit.errors import TextError
from speechkit.text.scripts import HAN_CLASS, check_letters, is_latin

_PIECE_RE = re.compile(
    rf"(?P<zh>[{HAN_CLASS}]+)"
    r"|(?P<en>[A-Za-zÀ-ÖØ-öø-ÿ]+(?:['’][A-Za-z]+)*)"
    r"|(?P<num>[-+]?[$£€¥￥]?\d[\d.,:：/]*(?:%|°C|℃|°)?)"
    r"|(?P<other>\s+|.)",
    re.DOTALL,
)


@dataclasses.dataclass
class Run:
    """A stretch of text in one language."""

    text: str
    lang: str


def _classify(text: str) -> list[tuple[str, str]]:
    return [(match.lastgroup or "other", match.group(0)) for match in _PIECE_RE.finditer(text)]


def _number_language(pieces: list[tuple[str, str]], index: int, default_lang: str | None) -> str | None:
    after = pieces[index + 1] if index + 1 < len(pieces) else ("", "")
    before = pieces[index - 1] if index > 0 else ("", "")
    if before[0] == "en":  # iPhone15: glued to a Latin word
        return "en"
    if after[0] == "zh" or before[0] == "zh":  # 15个, 第3: written against Han text
        return "zh"
    for kind, text in reversed(pieces[:index]):  # the nearest word before, across spaces only
        if kind in ("en", "zh"):
            return kind
        if kind == "other" and not text.isspace():
            break
    for kind, _ in pieces[index + 1:]:
        if kind in ("en", "zh"):
            return kind
    return default_lang


def split_language_runs(text: str, default_lang: str | None = None) -> list[Run]:
    """Language runs of ``text`` (see module docstring), in order, covering all of it.

    Args:
        text: raw text, possibly mixing Chinese and English.
        default_lang: language for text with no letters at all (e.g. only digits); also used
            for numbers that have no word to attach to.

    Raises:
        TextError: the text has no Chinese characters or Latin letters and no ``default_lang`` was
            given (letters of other scripts are named).
    """
    pieces = _classify(text)
    labels: list[str | None] = []
    for index, (kind, _) in enumerate(pieces):
        if kind in ("zh", "en"):
            labels.append(kind)
        elif kind == "num":
            labels.append(_number_language(pieces, index, default_lang))
        else:
            labels.append(None)
    if not any(labels):
        if default_lang is None:
            check_letters(text, is_latin, "Language detection", "Chinese characters or Latin letters")
            raise TextError(f"Cannot tell the language of {text!r}: it has no letters; pass a language.")
        return [Run(text, default_lang)] if text.strip() else []
    first = next(label for label in labels if label)
    runs: list[Run] = []
    current = first
    for (_, piece), label in zip(pieces, labels):
        lang = label or current
        if runs and runs[-1].lang == lang:
            runs[-1].text += piece
        else:
            runs.append(Run(piece, lang))
        current = lang
    return [Run(run.text.strip(), run.lang) for run in runs if run.text.strip()]
