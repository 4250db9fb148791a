"""Sentence splitting of long zh/en text and joining sentence audio with pauses."""
from __future__ import annotations

import numpy as np
import pytest

from speechkit.errors import TextError
from speechkit.infer.text_split import join_with_pauses, split_sentences


def test_splits_both_languages_punctuation_but_not_decimals() -> None:
    text = "Hello there. It costs 3.5 dollars! Really? 你好。我很好！谢谢"
    assert split_sentences(text) == ["Hello there.", "It costs 3.5 dollars!", "Really?", "你好。", "我很好！", "谢谢"]


def test_closing_quotes_stay_and_stray_punctuation_is_merged() -> None:
    assert split_sentences('Then I said "ok." Done') == ['Then I said "ok."', "Done"]
    assert split_sentences("“你好！”他说。") == ["“你好！”", "他说。"]
    assert split_sentences("... Hello.") == ["... Hello."]


def test_long_sentences_split_at_clauses_within_the_limit() -> None:
    assert split_sentences("one, two, three, four, five, six", max_chars=10) == ["one, two,", "three,", "four,", "five, six"]
    assert split_sentences("一，二，三，四，五，六", max_chars=4) == ["一，二，", "三，四，", "五，六"]
    assert split_sentences("one, two, three", max_chars=0) == ["one, two, three"]


def test_empty_text_is_an_error() -> None:
    with pytest.raises(TextError, match="Empty text"):
        split_sentences("  \n")


def test_join_inserts_pauses_between_parts_only() -> None:
    parts = [np.ones(100), np.full(50, 0.5)]
    joined = join_with_pauses(parts, sample_rate=1000, pause_ms=20)
    assert joined.dtype == np.float32 and joined.shape == (170,)
    assert np.all(joined[100:120] == 0) and np.all(joined[:100] == 1) and np.all(joined[120:] == 0.5)
    assert join_with_pauses([np.ones(3)], 1000, 20).shape == (3,)
    assert join_with_pauses([], 1000, 20).shape == (0,)
