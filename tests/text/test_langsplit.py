"""Language-run splitting of mixed Chinese/English text."""
from __future__ import annotations

import pytest

from speechkit.errors import TextError
from speechkit.text.langsplit import Run, split_language_runs

CASES = [
    ("我今天用 iPhone 15 打电话", [("我今天用", "zh"), ("iPhone 15", "en"), ("打电话", "zh")]),
    ("我有15个苹果", [("我有15个苹果", "zh")]),
    ("第3名是Tom", [("第3名是", "zh"), ("Tom", "en")]),
    ("iPhone15很贵", [("iPhone15", "en"), ("很贵", "zh")]),
    ("I bought 3 apples", [("I bought 3 apples", "en")]),
    ("Hello 你好 world!", [("Hello", "en"), ("你好", "zh"), ("world!", "en")]),
    ("他说：“OK，没问题。”", [("他说：“", "zh"), ("OK，", "en"), ("没问题。”", "zh")]),
    ("“你好”", [("“你好”", "zh")]),
    ("价格是$20", [("价格是$20", "zh")]),
    ("don't 放弃", [("don't", "en"), ("放弃", "zh")]),
    ("2024 is here", [("2024 is here", "en")]),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0] for c in CASES])
def test_split_language_runs(text: str, expected: list[tuple[str, str]]) -> None:
    assert split_language_runs(text) == [Run(t, lang) for t, lang in expected]


def test_numbers_alone_take_the_default_language() -> None:
    assert split_language_runs("2024", default_lang="zh") == [Run("2024", "zh")]
    assert split_language_runs("12:30", default_lang="en") == [Run("12:30", "en")]


def test_numbers_alone_without_a_language_are_an_error() -> None:
    with pytest.raises(TextError, match="no letters"):
        split_language_runs("2024")


def test_blank_text_has_no_runs() -> None:
    assert split_language_runs("  ", default_lang="en") == []


def test_characters_of_the_cjk_extensions_are_chinese() -> None:
    assert split_language_runs("𠀀 and 你好") == [Run("𠀀", "zh"), Run("and", "en"), Run("你好", "zh")]
