"""g2p_en frontend: a table of G2P cases (homographs, acronyms, numbers, contractions...)."""
from __future__ import annotations

import pytest

from speechkit.errors import TextError
from speechkit.interfaces.frontend import Frontend
from speechkit.registry import build

CASES = [
    # homographs decided from context
    ("I read the book yesterday.", "AY1 R EH1 D DH AH0 B UH1 K Y EH1 S T ER0 D EY2 <sil>"),
    ("I will read it tomorrow.", "AY1 W IH1 L R IY1 D IH1 T T AH0 M AA1 R OW2 <sil>"),
    ("I have read it.", "AY1 HH AE1 V R EH1 D IH1 T <sil>"),
    ("He read it.", "HH IY1 R EH1 D IH1 T <sil>"),
    ("I read books.", "AY1 R IY1 D B UH1 K S <sil>"),
    ("They live here.", "DH EY1 L IH1 V HH IY1 R <sil>"),
    ("We watched a live show.", "W IY1 W AA1 CH T AH0 L AY1 V SH OW1 <sil>"),
    ("Please record the song.", "P L IY1 Z R IH0 K AO1 R D DH AH0 S AO1 NG <sil>"),
    ("He broke the record.", "HH IY1 B R OW1 K DH AH0 R EH1 K ER0 D <sil>"),
    ("Lead the team.", "L IY1 D DH AH0 T IY1 M <sil>"),
    ("The pipe is made of lead.", "DH AH0 P AY1 P IH1 Z M EY1 D AH1 V L EH1 D <sil>"),
    ("I close the door.", "AY1 K L OW1 Z DH AH0 D AO1 R <sil>"),
    ("The shop is close.", "DH AH0 SH AA1 P IH1 Z K L OW1 S <sil>"),
    ("I use it.", "AY1 Y UW1 Z IH1 T <sil>"),
    ("What is the use?", "W AH1 T IH1 Z DH AH0 Y UW1 S <sil>"),
    ("The wind blows.", "DH AH0 W IH1 N D B L OW1 Z <sil>"),
    ("Wind the clock.", "W AY1 N D DH AH0 K L AA1 K <sil>"),
    ("I present a present.", "AY1 P R IY0 Z EH1 N T AH0 P R EH1 Z AH0 N T <sil>"),
    ("An object.", "AE1 N AA1 B JH EH0 K T <sil>"),
    ("Do not object.", "D UW1 N AA1 T AH0 B JH EH1 K T <sil>"),
    ("He will desert us.", "HH IY1 W IH1 L D IH0 Z ER1 T AH1 S <sil>"),
    ("The desert is hot.", "DH AH0 D EH1 Z ER0 T IH1 Z HH AA1 T <sil>"),
    # acronyms: dictionary words vs letters
    ("NASA", "N AE1 S AH0"),
    ("the FBI", "DH AH0 EH1 F B IY1 AY1"),
    ("the USA", "DH AH0 Y UW2 EH2 S EY1"),
    ("the US economy", "DH AH0 Y UW1 EH1 S IH0 K AA1 N AH0 M IY0"),
    ("an HSBC account", "AE1 N EY1 CH EH1 S B IY1 S IY1 AH0 K AW1 N T"),
    ("OK!", "OW1 K EY1 <sil>"),
    ("I love my iPhone.", "AY1 L AH1 V M AY1 AY1 F OW2 N <sil>"),
    # contractions, possessives, hyphens
    ("Don't worry.", "D OW1 N T W ER1 IY0 <sil>"),
    ("I'm fine.", "AY1 M F AY1 N <sil>"),
    ("We'll see.", "W IY1 L S IY1 <sil>"),
    ("It's late.", "IH1 T S L EY1 T <sil>"),
    ("John's hat.", "JH AA1 N Z HH AE1 T <sil>"),
    ("Smith's", "S M IH1 TH S"),
    ("Bush's", "B UH1 SH IH0 Z"),
    ("A well-known man.", "AH0 W EH1 L N OW1 N M AE1 N <sil>"),
    ("A mother-in-law.", "AH0 M AH1 DH ER0 IH0 N L AO1 <sil>"),
    # numbers through normalization
    ("It costs $3.", "IH1 T K AA1 S T S TH R IY1 D AA1 L ER0 Z <sil>"),
    ("Born in 1998.", "B AO1 R N IH0 N N AY1 N T IY1 N N AY1 N T IY0 EY1 T <sil>"),
    ("At 12:30.", "AE1 T T W EH1 L V TH ER1 D IY2 <sil>"),
    ("50% off", "F IH1 F T IY0 P ER0 S EH1 N T AO1 F"),
    ("3.14", "TH R IY1 P OY1 N T W AH1 N F AO1 R"),
    ("the 2nd day", "DH AH0 S EH1 K AH0 N D D EY1"),
    ("Dr. Who", "D AA1 K T ER0 HH UW1"),
    # punctuation -> pauses and boundaries
    ("Hello, world!", "HH AH0 L OW1 <sp> W ER1 L D <sil>"),
    ("Wait; what?", "W EY1 T <sp> W AH1 T <sil>"),
    ("Yes. No.", "Y EH1 S <sil> N OW1 <sil>"),
    ("One, two, three.", "W AH1 N <sp> T UW1 <sp> TH R IY1 <sil>"),
    ("Hello...", "HH AH0 L OW1 <sil>"),
    ("...and, - so", "AH0 N D <sp> S OW1"),
    ('"Quoted" text', "K W OW1 T IH0 D <sp> T EH1 K S T"),
    # plain words, dictionary and neural model
    ("hello", "HH AH0 L OW1"),
    ("cat", "K AE1 T"),
    ("dog", "D AO1 G"),
    ("speech", "S P IY1 CH"),
    ("thought", "TH AO1 T"),
    ("judge", "JH AH1 JH"),
    ("measure", "M EH1 ZH ER0"),
    ("Xylophone", "Z AY1 L AH0 F OW2 N"),
    ("quickly", "K W IH1 K L IY0"),
    ("Zebra", "Z IY1 B R AH0"),
    ("Schmidt", "SH M IH1 T"),
    ("Tuesday", "T UW1 Z D IY0"),
    ("café", "K AH0 F EY1"),
]


def symbols(phones: list) -> str:
    return " ".join(phone.symbol for phone in phones)


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0] for c in CASES])
def test_g2p_en_cases(english: Frontend, text: str, expected: str) -> None:
    assert symbols(english.phonemize(text)) == expected


def test_phones_are_tagged_english_and_in_inventory(english: Frontend) -> None:
    phones = english.phonemize("The quick brown fox, jumps!")
    inventory = set(english.inventory())
    assert all(p.token in inventory for p in phones if p.lang == "en")
    assert {p.lang for p in phones} == {"en", "-"}
    assert phones[-1].token == "<sil>"


def test_out_of_vocabulary_word_uses_the_neural_model(english: Frontend) -> None:
    phones = symbols(english.phonemize("blorptastic"))
    assert phones.startswith("B L AO") and phones.split()[-1] == "K"


@pytest.mark.parametrize("text", ["", "   ", "...", "!?, ;"])
def test_nothing_pronounceable_is_an_error(english: Frontend, text: str) -> None:
    with pytest.raises(TextError, match="Nothing pronounceable"):
        english.phonemize(text)


def test_wrong_language_is_an_error(english: Frontend) -> None:
    with pytest.raises(TextError, match="English"):
        english.phonemize("hello", "zh")


def test_acronym_spelling_can_be_turned_off(english: Frontend, nltk_data) -> None:
    plain = build("frontend", {"name": "g2p_en", "spell_acronyms": False})
    assert symbols(plain.phonemize("the US")) == "DH AH0 AH1 S"
    assert symbols(english.phonemize("the US")) == "DH AH0 Y UW1 EH1 S"


def test_latin_letters_without_an_ascii_decomposition_are_spelled(english: Frontend) -> None:
    assert symbols(english.phonemize("Straße")) == symbols(english.phonemize("Strasse"))
    assert symbols(english.phonemize("naïve café")) == symbols(english.phonemize("naive cafe"))
