"""Chinese normalization table: numbers (cn2an), width folding, traditional -> simplified."""
from __future__ import annotations

import pytest

from speechkit.text.chinese import normalize_chinese, read_digits, to_half_width, to_simplified

CASES = [
    ("1998年出生", "一九九八年出生"),
    ("2024年5月1日", "二零二四年五月一日"),
    ("3月8日", "三月八日"),
    ("圆周率是3.14", "圆周率是三点一四"),
    ("0.5公斤", "零点五公斤"),
    ("2.5公里", "二点五公里"),
    ("增长了50%", "增长了百分之五十"),
    ("10%的人", "百分之十的人"),
    ("1/2", "二分之一"),
    ("价格¥20", "价格二十元"),
    ("价格￥3.5", "价格三点五元"),
    ("花了$100", "花了一百美元"),
    ("12:30开会", "十二点三十分开会"),
    ("2:00见", "两点见"),
    ("9:05出发", "九点零五分出发"),
    ("电话13812345678", "电话幺三八幺二三四五六七八"),
    ("打110", "打幺幺零"),
    ("号码是0571", "号码是零五七幺"),
    ("我有2个苹果", "我有两个苹果"),
    ("３个人", "三个人"),
    ("2000人", "两千人"),
    ("12000元", "一万二千元"),
    ("有1000000人", "有一百万人"),
    ("共计12345元", "共计一万二千三百四十五元"),
    ("他22岁", "他二十二岁"),
    ("第2名", "第二名"),
    ("第1次", "第一次"),
    ("100分", "一百分"),
    ("-5度", "负五度"),
    ("今天25℃", "今天二十五摄氏度"),
    ("我們學習中文", "我们学习中文"),
    ("這個東西很貴", "这个东西很贵"),
    ("你好，世界！", "你好,世界!"),
    ("ＡＢＣ１２３", "ABC一百二十三"),
    ("他说：“好。”", "他说:“好。”"),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0] for c in CASES])
def test_normalize_chinese(text: str, expected: str) -> None:
    assert normalize_chinese(text) == expected


def test_helpers() -> None:
    assert to_half_width("ｈｉ！\u3000１") == "hi! 1"
    assert to_simplified("電話") == "电话"
    assert read_digits("1010", one="幺") == "幺零幺零"
