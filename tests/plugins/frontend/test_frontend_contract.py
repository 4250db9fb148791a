"""Every built-in frontend passes the plugin contract of speechkit.testing."""
from __future__ import annotations

import pytest

from speechkit.errors import TextError
from speechkit.interfaces.frontend import Frontend
from speechkit.testing import check_frontend

SAMPLES = {"en": "The quick brown fox, 2 days ago.", "zh": "我们一起去北京，好吗？"}


@pytest.mark.parametrize("fixture", ["english", "mandarin"])
def test_single_language_frontends(fixture: str, request: pytest.FixtureRequest) -> None:
    frontend: Frontend = request.getfixturevalue(fixture)
    check_frontend(frontend, {lang: SAMPLES[lang] for lang in frontend.languages})


def test_multilingual_frontend(multilingual: Frontend) -> None:
    check_frontend(multilingual, SAMPLES)


@pytest.mark.parametrize("fixture, text, letter, reader, reads", [
    ("english", "hello αβγ", "GREEK", "g2p_en", "Latin letters"),
    ("english", "Привет, my friend", "CYRILLIC", "g2p_en", "Latin letters"),
    ("english", "hello こんにちは", "HIRAGANA", "g2p_en", "Latin letters"),
    ("english", "hello 你好", "CJK", "g2p_en", "Latin letters"),
    ("mandarin", "你好Привет", "CYRILLIC", "pypinyin", "Chinese characters"),
    ("mandarin", "你好こんにちは", "HIRAGANA", "pypinyin", "Chinese characters"),
    ("mandarin", "你好안녕", "HANGUL", "pypinyin", "Chinese characters"),
    ("mandarin", "你好αβγ", "GREEK", "pypinyin", "Chinese characters"),
])
def test_letters_of_other_scripts_are_named_in_an_error(fixture: str, text: str, letter: str, reader: str, reads: str,
                                                        request: pytest.FixtureRequest) -> None:
    """Not a crash (English) or words left out of the speech without a word (Mandarin)."""
    frontend: Frontend = request.getfixturevalue(fixture)
    with pytest.raises(TextError, match=f"{reader}.*{letter}.*{reads}"):
        frontend.phonemize(text)
