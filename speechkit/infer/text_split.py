"""Long text -> sentences for synthesis, and sentence waveforms -> one waveform with pauses.

A codec LM synthesises one sentence at a time well; a paragraph is split at sentence-final
punctuation of either language (``. ! ? ; …`` followed by a space or the end, and the full-width
``。！？；``), then sentences longer than ``max_chars`` are split again at clause punctuation
(``, ， 、 : ：``). Punctuation stays with the piece before it, so each piece still ends the way
the frontend expects (a boundary token). Decimal points (``3.5``) and abbreviations without a
following space never split.
"""
from __future__ import annotations

import re

import numpy as np

from speechkit.errors import TextError
from speechkit.text.scripts import HAN_CLASS

#: Sentence ends: Western marks need whitespace (or the end) after them; full-width marks do not.
_SENTENCE_END = re.compile(r"[.!?;…]+[\"'”’)\]]*(?=\s)|[。！？；]+[”’」』）\"']*")
#: Clause ends, used only inside over-long sentences.
_CLAUSE_END = re.compile(r"[,:](?=\s)|[，、：]")
#: A piece with none of these characters is not worth a synthesis call of its own.
_PRONOUNCEABLE = re.compile(rf"[A-Za-zÀ-ÿ0-9{HAN_CLASS}]")


def _split(pattern: re.Pattern[str], text: str) -> list[str]:
    """Cut ``text`` right after every match of ``pattern``; strip and drop empty pieces."""
    cuts = [match.end() for match in pattern.finditer(text)]
    bounds = zip([0, *cuts], [*cuts, len(text)])
    return [text[start:end].strip() for start, end in bounds if text[start:end].strip()]


def _merge_unpronounceable(pieces: list[str]) -> list[str]:
    """Glue pieces with no letters/digits (stray quotes, ``...``) onto their neighbour."""
    merged: list[str] = []
    for piece in pieces:
        if merged and not _PRONOUNCEABLE.search(piece):
            merged[-1] = f"{merged[-1]} {piece}"
        elif merged and not _PRONOUNCEABLE.search(merged[-1]):
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Split ``text`` into sentences (and over-long sentences into clauses).

    Args:
        text: one or more sentences in Chinese, English or both.
        max_chars: sentences longer than this are split at clause punctuation (if they have
            any); 0 disables the second split.

    Returns:
        Non-empty pieces in order; joined with spaces they hold every character of ``text``
        except whitespace at the split points.

    Raises:
        TextError: ``text`` is empty or only whitespace.
    """
    if not text or not text.strip():
        raise TextError("Empty text: give at least one word to synthesise.")
    pieces: list[str] = []
    for sentence in _split(_SENTENCE_END, text.strip()):
        if max_chars > 0 and len(sentence) > max_chars:
            pieces.extend(_pack_clauses(_split(_CLAUSE_END, sentence), max_chars))
        else:
            pieces.append(sentence)
    return _merge_unpronounceable(pieces)


def _pack_clauses(clauses: list[str], max_chars: int) -> list[str]:
    """Greedily join consecutive clauses while the result stays within ``max_chars``."""
    packed: list[str] = []
    for clause in clauses:
        joiner = "" if packed and _is_cjk(packed[-1][-1:]) else " "
        if packed and len(packed[-1]) + len(joiner) + len(clause) <= max_chars:
            packed[-1] = f"{packed[-1]}{joiner}{clause}"
        else:
            packed.append(clause)
    return packed


def _is_cjk(char: str) -> bool:
    return bool(char) and ("\u3000" <= char <= "\u9fff" or "\uff00" <= char <= "\uffef")


def join_with_pauses(wavs: list[np.ndarray], sample_rate: int, pause_ms: float) -> np.ndarray:
    """Concatenate mono waveforms with ``pause_ms`` of silence between consecutive ones.

    wavs: float[S_i] each -> float32[sum S_i + (n - 1) * pause samples].
    """
    if not wavs:
        return np.zeros(0, dtype=np.float32)
    if pause_ms < 0:
        raise TextError(f"pause_ms must be >= 0, got {pause_ms}.")
    pause = np.zeros(int(round(sample_rate * pause_ms / 1000.0)), dtype=np.float32)
    parts: list[np.ndarray] = []
    for index, wav in enumerate(wavs):
        if index:
            parts.append(pause)
        parts.append(np.asarray(wav, dtype=np.float32).reshape(-1))
    return np.concatenate(parts)
