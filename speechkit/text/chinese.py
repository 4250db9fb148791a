"""Chinese text normalization: traditional -> simplified, full-width -> half-width, numbers -> 汉字.

Order: NFKC-free width folding (full-width ASCII ``ＡＢＣ１２３！`` -> ``ABC123!``; 。、《》 are kept),
traditional -> simplified (``opencc-python-reimplemented``, ``t2s``), then numbers: times
(``12:30`` -> 十二点三十分), currency (``¥20`` -> 二十元), temperatures, phone-like digit strings
(read digit by digit, 1 as 幺), and everything else through ``cn2an.transform(..., "an2cn")``
(dates ``1998年`` -> 一九九八年, decimals, percentages, fractions, negatives, cardinals). Finally
二 before a measure word becomes 两 (两个, 两千).
"""
from __future__ import annotations

import functools
import re
from typing import Any

from speechkit.errors import MissingDependencyError

CURRENCY_UNITS = {"¥": "元", "￥": "元", "$": "美元", "€": "欧元", "£": "英镑"}
MEASURE_WORDS = "个只本件位条张次天种家辆台块名岁样份双层口句页遍些元斤公米千万亿"
_DIGITS = "零一二三四五六七八九"
_TIME_RE = re.compile(r"(?<!\d)([01]?\d|2[0-3])[:：]([0-5]\d)(?!\d)")
_CURRENCY_RE = re.compile(r"([¥￥$€£])\s?(\d+(?:\.\d+)?)")
_TEMPERATURE_RE = re.compile(r"(-?\d+(?:\.\d+)?)\s?(?:°C|℃)")
#: landlines with an area code, 11-digit mobiles, and digit strings with a leading zero
_PHONE_RE = re.compile(r"(?<![\d.])(?:\d{3,4}-\d{7,8}|1[3-9]\d{9}|0\d{2,})(?![\d.])")
_SERVICE_NUMBER_RE = re.compile(r"(?<=[打拨])(1\d\d)(?!\d)")  # 打110, 拨打120: hotlines
_LIANG_RE = re.compile(rf"(?<![{_DIGITS}十百千万亿点第])二(?=[{MEASURE_WORDS}])")


def to_half_width(text: str) -> str:
    """Full-width ASCII variants (U+FF01..U+FF5E) and the ideographic space -> half-width."""
    return "".join(
        chr(ord(char) - 0xFEE0) if 0xFF01 <= ord(char) <= 0xFF5E else (" " if char == "\u3000" else char)
        for char in text
    )


@functools.lru_cache(maxsize=1)
def _converter() -> Any:
    try:
        from opencc import OpenCC
    except ImportError as error:
        raise MissingDependencyError(
            "Chinese normalization needs opencc-python-reimplemented: pip install "
            "'opencc-python-reimplemented>=0.1.7,<1' (or pip install -e '.[text]')."
        ) from error
    return OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional -> simplified characters (``們`` -> ``们``); simplified text is unchanged."""
    return _converter().convert(text)


def read_digits(digits: str, one: str = "一") -> str:
    """Digit by digit: ``"110"`` -> 一一零; phone numbers read 1 as ``one="幺"``."""
    return "".join(one if d == "1" else _DIGITS[int(d)] for d in digits if d.isdigit())


def _cn2an() -> Any:
    try:
        import cn2an
    except ImportError as error:
        raise MissingDependencyError(
            "Chinese number normalization needs cn2an: pip install 'cn2an>=0.5,<1' "
            "(or pip install -e '.[text]')."
        ) from error
    return cn2an


def number(text: str) -> str:
    """An Arabic number (``"3.14"``, ``"-5"``, ``"20"``) in characters via cn2an."""
    return str(_cn2an().an2cn(text, "low"))


def _time(match: re.Match[str]) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    hours = "两" if hour == 2 else number(str(hour))
    if minute == 0:
        return f"{hours}点"
    minutes = f"零{number(str(minute))}" if minute < 10 else number(str(minute))
    return f"{hours}点{minutes}分"


def normalize_chinese(text: str) -> str:
    """Normalize Chinese ``text`` (see module docstring); Latin words are left as they are."""
    text = to_simplified(to_half_width(text))
    text = _TIME_RE.sub(_time, text)
    text = _CURRENCY_RE.sub(lambda m: f"{number(m.group(2))}{CURRENCY_UNITS[m.group(1)]}", text)
    text = _TEMPERATURE_RE.sub(lambda m: f"{number(m.group(1))}摄氏度", text)
    text = _PHONE_RE.sub(lambda m: read_digits(m.group(0), one="幺"), text)
    text = _SERVICE_NUMBER_RE.sub(lambda m: read_digits(m.group(0), one="幺"), text)
    if any(char.isdigit() for char in text):
        text = str(_cn2an().transform(text, "an2cn"))
    return _LIANG_RE.sub("两", text)
