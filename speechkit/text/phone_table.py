"""The phone table: one token list shared by all languages, saved as Kaldi-style ``tokens.txt``.

Tokens are ``<lang>:<symbol>`` phones plus the specials :data:`SPECIALS` (``<pad>`` = 0,
``<unk>`` = 1, ``<sp>``, ``<sil>``), which are language-neutral (``"-"``). The table is built from
the phones seen in the training set plus the full inventory of every G2P in use, so dev/test
text never maps to ``<unk>``. Per-phone language IDs come from the token prefix
(:func:`speechkit.text.languages.token_language_id`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from speechkit.errors import DataError
from speechkit.interfaces.frontend import BOUNDARY, PAUSE
from speechkit.text.languages import token_language_ids
from speechkit.utils.fs import atomic_write_text

PAD = "<pad>"
UNK = "<unk>"
SPECIALS: tuple[str, ...] = (PAD, UNK, PAUSE, BOUNDARY)


class PhoneTable:
    """Token <-> id mapping with fixed specials first and the phones sorted after them.

    Args:
        tokens: phone tokens (duplicates and specials are ignored; order is normalised).
    """

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        phones = sorted({token for token in tokens if token not in SPECIALS})
        for token in phones:
            if not token or any(char.isspace() for char in token):
                raise DataError(f"Phone token {token!r} is empty or contains whitespace.")
        self.tokens: list[str] = [*SPECIALS, *phones]
        self._ids = {token: index for index, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def unk_id(self) -> int:
        return self._ids[UNK]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; unknown tokens map to ``<unk>``."""
        return [self._ids.get(token, self.unk_id) for token in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Tokens of ``ids``."""
        return [self.tokens[index] for index in ids]

    def language_ids(self, tokens: Sequence[str]) -> list[int]:
        """Per-phone language IDs (see :mod:`speechkit.text.languages`)."""
        return token_language_ids(tokens)

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The tokens not in the table, sorted."""
        return sorted({token for token in tokens if token not in self._ids})

    def save(self, path: str | Path) -> None:
        """Write ``<token> <id>`` lines (Kaldi ``tokens.txt``), atomically."""
        atomic_write_text(path, "".join(f"{token} {index}\n" for index, token in enumerate(self.tokens)))

    @classmethod
    def load(cls, path: str | Path) -> "PhoneTable":
        """Read a ``tokens.txt`` written by :meth:`save`.

        Raises:
            DataError: missing file, malformed line, or ids that are not 0..N-1 in order with the
                specials first.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"Token list {path} does not exist; run stage 2 (speechkit.bin.phonemize).")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"Token list {path} is not UTF-8 text ({error}); it is damaged: re-run stage 2 "
                            "(speechkit.bin.phonemize) or copy it again.") from error
        tokens: list[str] = []
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) != len(tokens):
                raise DataError(f"{path}:{number}: expected '<token> {len(tokens)}', got {line!r}.")
            tokens.append(fields[0])
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"{path}: the first tokens must be {list(SPECIALS)}, got {tokens[:len(SPECIALS)]}.")
        table = cls(tokens)
        if table.tokens != tokens:
            raise DataError(f"{path}: phones must be sorted after the specials (as PhoneTable writes them).")
        return table
