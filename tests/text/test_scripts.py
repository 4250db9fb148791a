"""Letters a frontend cannot read (speechkit.text.scripts)."""
from __future__ import annotations

import pytest

from speechkit.errors import TextError
from speechkit.text.langsplit import split_language_runs
from speechkit.text.scripts import ascii_latin, check_letters, is_latin, is_letter, unreadable_letters


def test_ascii_latin_drops_accents_and_spells_other_latin_letters() -> None:
    assert ascii_latin("naïve café, Ñandú") == "naive cafe, Nandu"
    assert ascii_latin("Straße, Øresund, Æsir, œuvre, Łódź, Þór") == "Strasse, Oresund, AEsir, oeuvre, Lodz, Thor"
    assert ascii_latin("你好 Привет 😀 3.5%") == "你好 Привет 😀 3.5%"  # other scripts and symbols kept


def test_letters_of_every_script_but_not_symbols() -> None:
    assert all(is_letter(c) for c in "aЖ你こ한α")
    assert not any(is_letter(c) for c in "1 ,😀-%")
    assert [is_latin(c) for c in "aéßＡЖ你"] == [True, True, True, True, False, False]


def test_unreadable_letters_are_distinct_in_order() -> None:
    assert unreadable_letters("hello Привет привет", str.isascii) == ["П", "р", "и", "в", "е", "т", "п"]
    assert unreadable_letters("hello, 3 😀!", str.isascii) == []


def test_check_letters_names_them_and_says_what_to_do() -> None:
    check_letters("hello 😀", str.isascii, "The reader", "Latin letters")  # nothing unreadable
    with pytest.raises(TextError) as error:
        check_letters("hi αβγδεζη", str.isascii, "The reader", "Latin letters")
    message = str(error.value)
    assert "'α' (GREEK SMALL LETTER ALPHA)" in message and "and 2 more" in message
    assert "'hi αβγδεζη'" in message and "Write those words in Latin letters, or remove them" in message


def test_language_detection_names_letters_of_other_scripts() -> None:
    with pytest.raises(TextError, match="CYRILLIC CAPITAL LETTER PE"):
        split_language_runs("Привет мир")
    assert split_language_runs("Привет", default_lang="en")[0].lang == "en"  # the frontend decides then
