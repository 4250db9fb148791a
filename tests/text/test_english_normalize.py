"""English normalization table: numbers, years, currency, times, ordinals, abbreviations."""
from __future__ import annotations

import pytest

from speechkit.text.english import cardinal, digits, normalize_english, ordinal, year

CASES = [
    ("I was born in 1998.", "I was born in nineteen ninety-eight."),
    ("In 2005", "In two thousand five"),
    ("In 2024", "In twenty twenty-four"),
    ("The year 1905", "The year nineteen oh-five"),
    ("1800 miles", "eighteen hundred miles"),
    ("In the 1990s", "In the nineteen nineties"),
    ("The 80s", "The eighties"),
    ("It costs $3.50 today.", "It costs three dollars fifty cents today."),
    ("$1 and $20", "one dollar and twenty dollars"),
    ("$2.5 billion", "two point five billion dollars"),
    ("$5 million", "five million dollars"),
    ("€5", "five euros"),
    ("£3", "three pounds"),
    ("Meet me at 12:30.", "Meet me at twelve thirty."),
    ("At 9:00 we go.", "At nine o'clock we go."),
    ("See you at 7:05 pm", "See you at seven oh five P M"),
    ("It is 10:45 am", "It is ten forty-five A M"),
    ("50% off", "fifty percent off"),
    ("It grew 3.5%", "It grew three point five percent"),
    ("Pi is 3.14", "Pi is three point one four"),
    ("0.5 kg", "zero point five kg"),
    ("Version 2.0", "Version two point zero"),
    ("He came 21st.", "He came twenty-first."),
    ("She was 2nd and 3rd.", "She was second and third."),
    ("The 1st of May", "The first of May"),
    ("The 11th hour", "The eleventh hour"),
    ("Call 555-1234 now", "Call five five five, one two three four now"),
    ("Call 13812345678", "Call one three eight one two three four five six seven eight"),
    ("My code is 0451", "My code is zero four five one"),
    ("1,000,000 people", "one million people"),
    ("100 people", "one hundred people"),
    ("101 dalmatians", "one hundred one dalmatians"),
    ("3 cats", "three cats"),
    ("Room 12", "Room twelve"),
    ("It is -5 degrees", "It is minus five degrees"),
    ("2 + 2 = 4", "two plus two equals four"),
    ("Rock & roll", "Rock and roll"),
    ("Dr. Smith", "doctor Smith"),
    ("Mr. and Mrs. Jones", "mister and missus Jones"),
    ("St. Paul", "saint Paul"),
    ("Jan. 5", "January five"),
    ("No. 7", "number seven"),
    ("cats vs. dogs", "cats versus dogs"),
    ("apples, pears etc.", "apples, pears et cetera."),
    ("e.g. apples", "for example apples"),
    ("i.e. pears", "that is pears"),
    ("Ｆｕｌｌ ｗｉｄｔｈ １２", "Full width twelve"),
    ("It’s fine", "It's fine"),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0] for c in CASES])
def test_normalize_english(text: str, expected: str) -> None:
    assert normalize_english(text) == expected


def test_number_helpers() -> None:
    assert cardinal(123) == "one hundred twenty-three"
    assert ordinal(22) == "twenty-second"
    assert year(1066) == "ten sixty-six"
    assert digits("907") == "nine zero seven"
