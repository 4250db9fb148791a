"""Phone table: specials first, save/load round trip, language IDs, malformed files."""
from __future__ import annotations

from pathlib import Path

import pytest

from speechkit.errors import DataError, TextError
from speechkit.text.languages import LANGUAGES, language_id, token_language, token_language_ids
from speechkit.text.phone_table import SPECIALS, PhoneTable


def test_specials_first_then_sorted_phones() -> None:
    table = PhoneTable(["zh:n", "en:AH0", "<sil>", "zh:n", "zh:i3"])
    assert table.tokens == [*SPECIALS, "en:AH0", "zh:i3", "zh:n"]
    assert (table.pad_id, table.unk_id) == (0, 1)


def test_encode_decode_and_unknown() -> None:
    table = PhoneTable(["zh:n", "zh:i3"])
    ids = table.encode(["zh:n", "zh:i3", "<sil>", "en:XX"])
    assert ids == [5, 4, 3, table.unk_id]
    assert table.decode(ids[:3]) == ["zh:n", "zh:i3", "<sil>"]
    assert table.unknown(["zh:n", "en:XX"]) == ["en:XX"]


def test_save_load_round_trip(tmp_path: Path) -> None:
    table = PhoneTable(["zh:n", "en:AH0", "zh:ang4"])
    table.save(tmp_path / "tokens.txt")
    lines = (tmp_path / "tokens.txt").read_text().splitlines()
    assert lines[:2] == ["<pad> 0", "<unk> 1"] and lines[-1] == "zh:n 6"
    assert PhoneTable.load(tmp_path / "tokens.txt").tokens == table.tokens


@pytest.mark.parametrize(
    "content, message",
    [("<pad> 0\n<unk> 2\n", "expected"), ("zh:n 0\n", "expected|first tokens"), ("<pad>\n", "expected")],
)
def test_load_rejects_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "tokens.txt").write_text(content)
    with pytest.raises(DataError, match=message):
        PhoneTable.load(tmp_path / "tokens.txt")


def test_load_missing_file_names_the_stage(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="stage 2"):
        PhoneTable.load(tmp_path / "tokens.txt")


def test_language_ids_from_token_prefix() -> None:
    assert token_language("zh:ang4") == "zh" and token_language("<sp>") == "-"
    assert token_language_ids(["en:AH0", "<sil>", "zh:n"]) == [LANGUAGES["en"], 0, LANGUAGES["zh"]]
    assert PhoneTable().language_ids(["zh:n"]) == [language_id("zh")]
    with pytest.raises(TextError, match="Unknown language"):
        language_id("fr")


def test_load_names_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "tokens.txt").write_bytes(b"<pad> 0\n<unk> 1\n\xa2\xff 2\n")
    with pytest.raises(DataError, match="not UTF-8 text.*re-run stage 2"):
        PhoneTable.load(tmp_path / "tokens.txt")
