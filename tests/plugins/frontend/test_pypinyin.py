"""pypinyin frontend: polyphones, tone sandhi, numbers, traditional input, punctuation."""
from __future__ import annotations

import pytest

from speechkit.errors import TextError
from speechkit.interfaces.frontend import Frontend
from speechkit.plugins.frontend.mandarin import split_syllable
from speechkit.registry import build

CASES = [
    # third-tone sandhi: within words, 2+1 / 1+2 words, and across one-syllable words
    ("你好", "n i2 h ao3"),
    ("老虎", "l ao2 h u3"),
    ("水果", "sh uei2 g uo3"),
    ("了解", "l iao2 j ie3"),
    ("只有", "zh iii2 iou3"),
    ("展览馆", "zh an2 l an2 g uan3"),
    ("小老虎", "x iao3 l ao2 h u3"),
    ("我很好", "uo2 h en2 h ao3"),
    ("我想买雨伞", "uo2 x iang2 m ai2 v2 s an3"),
    ("北京", "b ei3 j ing1"),
    # 一
    ("一个", "i2 g e4"),
    ("一样", "i2 iang4"),
    ("一万", "i2 uan4"),
    ("一天", "i4 t ian1"),
    ("一起", "i4 q i3"),
    ("一百", "i4 b ai3"),
    ("一只猫", "i4 zh iii1 m ao1"),
    ("第一", "d i4 i1"),
    ("一月", "i1 ve4"),
    ("十一", "sh iii2 i1"),
    ("看一看", "k an4 i5 k an4"),
    # 不
    ("不是", "b u2 sh iii4"),
    ("不对", "b u2 d uei4"),
    ("不去", "b u2 q v4"),
    ("不好", "b u4 h ao3"),
    ("是不是", "sh iii4 b u5 sh iii4"),
    # polyphones by word and context
    ("银行", "in2 h ang2"),
    ("行走", "x ing2 z ou3"),
    ("银行行长", "in2 h ang2 h ang2 zh ang3"),
    ("长大", "zh ang3 d a4"),
    ("长度", "ch ang2 d u4"),
    ("这条路很长", "zh e4 t iao2 l u4 h en3 ch ang2"),
    ("太长了", "t ai4 ch ang2 l e5"),
    ("走了", "z ou3 l e5"),
    ("还是", "h ai2 sh iii4"),
    ("他还没来", "t a1 h ai2 m ei2 l ai2"),
    ("还有", "h ai2 iou3"),
    ("还钱", "h uan2 q ian2"),
    ("跑得快", "p ao3 d e5 k uai4"),
    ("觉得", "j ve2 d e5"),
    ("我得走了", "uo2 d ei2 z ou3 l e5"),
    ("慢慢地走", "m an4 m an4 d e5 z ou3"),
    ("重要", "zh ong4 iao4"),
    ("重新", "ch ong2 x in1"),
    ("为了", "uei4 l e5"),
    ("为什么", "uei4 sh en2 m e5"),
    ("音乐", "in1 ve4"),
    ("快乐", "k uai4 l e4"),
    ("睡觉", "sh uei4 j iao4"),
    ("调查", "d iao4 ch a2"),
    ("空调", "k ong1 t iao2"),
    # zero initial, ü, apical vowels, erhua-free 儿
    ("要", "iao4"),
    ("鱼", "v2"),
    ("是", "sh iii4"),
    ("资", "z ii1"),
    ("女儿", "n v3 er2"),
    ("朋友", "p eng2 iou3"),
    ("学习", "x ve2 x i2"),
    ("中国", "zh ong1 g uo2"),
    # numbers, traditional and full-width input, punctuation
    ("3.14", "s an1 d ian3 i1 s ii4"),
    ("50%", "b ai3 f en1 zh iii1 u3 sh iii2"),
    ("¥20", "er4 sh iii2 van2"),
    ("12:30", "sh iii2 er4 d ian3 s an1 sh iii2 f en1"),
    ("我們", "uo3 m en5"),
    ("電話", "d ian4 h ua4"),
    ("你好，世界！", "n i2 h ao3 <sp> sh iii4 j ie4 <sil>"),
    ("今天天气很好。", "j in1 t ian1 t ian1 q i4 h en2 h ao3 <sil>"),
    ("真的吗？", "zh en1 d e5 m a5 <sil>"),
    ("，好、好；", "h ao3 <sp> h ao3 <sp>"),
]


def symbols(phones: list) -> str:
    return " ".join(phone.symbol for phone in phones)


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0] for c in CASES])
def test_pypinyin_cases(mandarin: Frontend, text: str, expected: str) -> None:
    assert symbols(mandarin.phonemize(text)) == expected


@pytest.mark.parametrize(
    "syllable, expected",
    [("zhang3", ["zh", "ang3"]), ("yao4", ["iao4"]), ("wei4", ["uei4"]), ("yu2", ["v2"]),
     ("ju2", ["j", "v2"]), ("shi4", ["sh", "iii4"]), ("zi3", ["z", "ii3"]), ("ri4", ["r", "iii4"]),
     ("n2", ["n2"]), ("yo1", ["io1"]), ("er2", ["er2"])],
)
def test_split_syllable(syllable: str, expected: list[str]) -> None:
    assert split_syllable(syllable) == expected


def test_phones_are_in_the_inventory(mandarin: Frontend) -> None:
    inventory = set(mandarin.inventory())
    phones = mandarin.phonemize("我们一起去北京看长城，好不好？嗯，一九九八年。")
    assert all(p.token in inventory for p in phones if p.lang == "zh")


def test_sandhi_can_be_turned_off() -> None:
    plain = build("frontend", {"name": "pypinyin", "tone_sandhi": False})
    assert symbols(plain.phonemize("你好")) == "n i3 h ao3"


@pytest.mark.parametrize("text", ["", "，。", "   ", "abc"])
def test_nothing_pronounceable_is_an_error(mandarin: Frontend, text: str) -> None:
    with pytest.raises(TextError, match="Nothing pronounceable"):
        mandarin.phonemize(text)


def test_wrong_language_is_an_error(mandarin: Frontend) -> None:
    with pytest.raises(TextError, match="Mandarin"):
        mandarin.phonemize("你好", "en")


def test_latin_letters_and_symbols_are_still_skipped(mandarin: Frontend) -> None:
    assert symbols(mandarin.phonemize("你好abc😀")) == symbols(mandarin.phonemize("你好"))


def test_characters_without_a_reading_are_named_in_an_error(mandarin: Frontend) -> None:
    """pypinyin has no reading for some rare characters (it crashed on them with a TypeError)."""
    with pytest.raises(TextError, match=r"no reading for '㐂' \(CJK UNIFIED IDEOGRAPH-3402\)"):
        mandarin.phonemize("你好㐂")


def test_characters_beyond_the_basic_blocks_are_read_when_pypinyin_knows_them(mandarin: Frontend) -> None:
    assert symbols(mandarin.phonemize("𠀀")) == "h e1"  # U+20000, extension B
