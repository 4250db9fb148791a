"""multilingual frontend: mixed text routed to per-language frontends, config checks."""
from __future__ import annotations

import pytest

from speechkit.errors import ConfigError, TextError
from speechkit.interfaces.frontend import Frontend
from speechkit.registry import build

CASES = [
    ("我今天用 iPhone 15 打电话", None,
     "zh:uo3 zh:j zh:in1 zh:t zh:ian1 zh:iong4 en:AY1 en:F en:OW2 en:N en:F en:IH0 en:F en:T en:IY1 en:N "
     "zh:d zh:a3 zh:d zh:ian4 zh:h zh:ua4"),
    ("Hello，你好！", None, "en:HH en:AH0 en:L en:OW1 <sp> zh:n zh:i2 zh:h zh:ao3 <sil>"),
    # a chain of one-syllable third tones: all but the last rise (fast-speech sandhi)
    ("我有2个苹果", None, "zh:uo2 zh:iou2 zh:l zh:iang3 zh:g zh:e4 zh:p zh:ing2 zh:g zh:uo3"),
    ("12:30", "zh", "zh:sh zh:iii2 zh:er4 zh:d zh:ian3 zh:s zh:an1 zh:sh zh:iii2 zh:f zh:en1"),
    ("12:30", "en", "en:T en:W en:EH1 en:L en:V en:TH en:ER1 en:D en:IY2"),
    ("他是FBI的。", "zh", "zh:t zh:a1 zh:sh zh:iii4 en:EH1 en:F en:B en:IY1 en:AY1 zh:d zh:e5 <sil>"),
    ("我們用 Python。", "zh", "zh:uo3 zh:m zh:en5 zh:iong4 en:P en:AY1 en:TH en:AA0 en:N <sil>"),
]


def tokens(phones: list) -> str:
    return " ".join(phone.token for phone in phones)


@pytest.mark.parametrize("text, lang, expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_mixed_text(multilingual: Frontend, text: str, lang: str | None, expected: str) -> None:
    assert tokens(multilingual.phonemize(text, lang)) == expected


def test_languages_and_inventory(multilingual: Frontend, english: Frontend, mandarin: Frontend) -> None:
    assert tuple(multilingual.languages) == ("en", "zh")
    assert set(multilingual.inventory()) == set(english.inventory()) | set(mandarin.inventory())


def test_normalize_per_run(multilingual: Frontend) -> None:
    assert multilingual.normalize("我有2个 apples") == "我有两个 apples"


@pytest.mark.parametrize("text", ["", "。。", "  "])
def test_nothing_pronounceable(multilingual: Frontend, text: str) -> None:
    with pytest.raises(TextError):
        multilingual.phonemize(text, "zh")


def test_unconfigured_language_is_an_error(nltk_data) -> None:
    english_only = build("frontend", {"name": "multilingual", "languages": {"en": {"name": "g2p_en"}}})
    with pytest.raises(TextError, match="languages.zh"):
        english_only.phonemize("hello 你好")


def test_config_errors(nltk_data) -> None:
    with pytest.raises(ConfigError, match="handles"):
        build("frontend", {"name": "multilingual", "languages": {"zh": {"name": "g2p_en"}}})

def test_empty_languages_mean_english_and_mandarin(nltk_data) -> None:
    assert tuple(build("frontend", {"name": "multilingual", "languages": {}}).languages) == ("en", "zh")


@pytest.mark.parametrize("text", ["Привет, my friend", "Hello こんにちは 你好", "你好 안녕"])
def test_letters_of_other_scripts_are_an_error_not_a_crash(multilingual: Frontend, text: str) -> None:
    with pytest.raises(TextError, match="cannot read the letters"):
        multilingual.phonemize(text)
