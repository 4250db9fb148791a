"""``pypinyin`` frontend: Mandarin text -> initials and toned finals (``zh:sh``, ``zh:ang4``).

Pipeline: :func:`~speechkit.text.chinese.normalize_chinese` -> split at punctuation -> jieba word
segmentation of each run of Han characters -> ``pypinyin`` TONE3 readings per word (its phrase
dictionary resolves polyphones by word: 银行 hang2 / 行走 xing2, 长大 zhang3 / 长度 chang2) ->
:func:`~speechkit.text.mandarin_sandhi.apply_sandhi` -> each syllable split into an initial and
a final with its tone (1-4, 5 = neutral).

Phone conventions (strict pinyin finals, so the zero initial is consistent): a syllable without
an initial emits only its final (要 yao4 -> ``iao4``, 为 wei4 -> ``uei4``, 鱼 yu2 -> ``v2``); ü is
``v``; the apical vowel after z/c/s is ``ii`` and after zh/ch/sh/r is ``iii`` (是 -> ``sh iii4``),
so it never shares a phone with the ``i`` of 你. Latin letters are not Mandarin and are skipped
here; the ``multilingual`` frontend sends them to an English frontend. Letters of other scripts
(kana, hangul, Cyrillic...) are a :class:`~speechkit.errors.TextError` that names them.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import warnings
from typing import Any, Sequence

from speechkit.errors import MissingDependencyError, TextError
from speechkit.interfaces.frontend import Frontend, Phone, PhoneSequence
from speechkit.registry import FRONTEND
from speechkit.text.boundaries import collapse_boundaries, punctuation_phone
from speechkit.text.chinese import normalize_chinese
from speechkit.text.mandarin_sandhi import Word, apply_sandhi
from speechkit.text.scripts import HAN_CLASS, check_letters, is_latin, name_letters

LANG = "zh"
INITIALS = tuple("b p m f d t n l g k h j q x zh ch sh r z c s".split())
FINALS = tuple(
    "a o e ai ei ao ou an en ang eng ong er i ia ie iao iou ian in iang ing iong io "
    "u ua uo uai uei uan uen uang ueng v ve van vn ii iii n m ng hm hng".split()
)
TONES = (1, 2, 3, 4, 5)
_HAN_RE = re.compile(f"[{HAN_CLASS}]+")
_NO_READING = "\x00"  # what pypinyin gives a character it has no reading for (see syllables)


def _is_readable(char: str) -> bool:
    """Chinese characters, and Latin letters (skipped here, read by the multilingual frontend's
    English frontend); other scripts' letters are a TextError."""
    return _HAN_RE.fullmatch(char) is not None or is_latin(char)


def _import_pinyin_tools() -> tuple[Any, Any]:
    try:
        with warnings.catch_warnings():  # jieba imports the deprecated pkg_resources
            warnings.simplefilter("ignore", DeprecationWarning)
            import jieba
        import pypinyin
    except ImportError as error:
        raise MissingDependencyError(
            "The pypinyin frontend needs pypinyin and jieba: pip install 'pypinyin>=0.50,<1' "
            "'jieba>=0.42,<1' (or pip install -e '.[text]')."
        ) from error
    jieba.setLogLevel(60)  # its dictionary-loading chatter is not ours to print
    return jieba, pypinyin


def split_syllable(syllable: str) -> list[str]:
    """TONE3 syllable -> ``[initial, final]`` or ``[final]`` (see module docstring).

    ``"shi4"`` -> ``["sh", "iii4"]``, ``"yao4"`` -> ``["iao4"]``, ``"n2"`` -> ``["n2"]``.
    """
    from pypinyin.contrib.tone_convert import to_finals_tone3, to_initials

    tone = syllable[-1] if syllable[-1].isdigit() else "5"
    initial = to_initials(syllable, strict=True)
    final = to_finals_tone3(syllable, strict=True, neutral_tone_with_five=True)
    if not final or not final[-1].isdigit():  # syllabic nasals: 嗯 n2, 呣 m2, 噷 hm5
        return [f"{syllable.rstrip('012345')}{tone}"]
    if final[:-1] == "i" and initial in ("z", "c", "s"):
        final = f"ii{tone}"
    elif final[:-1] == "i" and initial in ("zh", "ch", "sh", "r"):
        final = f"iii{tone}"
    elif final[:-1] == "o" and not initial:  # 哟 yo: strict pinyin drops the medial
        final = f"io{tone}"
    return [initial, final] if initial else [final]


@FRONTEND.register("pypinyin")
class MandarinFrontend(Frontend):
    """Mandarin G2P: jieba + pypinyin + tone sandhi. See the module docstring for the phone set."""

    @dataclasses.dataclass
    class Config:
        #: apply tone sandhi (3-3, 一, 不) and the context polyphone rules
        tone_sandhi: bool = True

    def __init__(self, config: "MandarinFrontend.Config | None" = None, **context: Any) -> None:
        super().__init__(config, **context)
        self._jieba, self._pypinyin = _import_pinyin_tools()
        from pypinyin.constants import PHRASES_DICT

        self._phrases = PHRASES_DICT

    @property
    def languages(self) -> Sequence[str]:
        return (LANG,)

    def inventory(self) -> list[str]:
        """Every phone token this frontend can emit: initials, and finals with tones 1-5."""
        symbols = list(INITIALS) + [f"{final}{tone}" for final in FINALS for tone in TONES]
        return [Phone(symbol, LANG).token for symbol in symbols]

    def normalize(self, text: str, lang: str | None = None) -> str:
        self._check_lang(lang)
        return normalize_chinese(text)

    def syllables(self, han: str) -> list[Word]:
        """Words of a run of Han characters, each a list of ``(char, TONE3 syllable)``."""
        words: list[Word] = []
        for segment in self._jieba.lcut(han, HMM=True):
            readings = self._pypinyin.lazy_pinyin(
                segment, style=self._pypinyin.Style.TONE3, neutral_tone_with_five=True,
                errors=lambda chars: [_NO_READING] * len(chars),
            )
            unread = [c for c, s in zip(segment, readings) if s.startswith(_NO_READING)]
            if unread:
                raise TextError(f"The pypinyin (Mandarin) frontend has no reading for {name_letters(unread)} in {han!r}: "
                                "replace it with a common character of the same sound, or remove it.")
            words.append([(c, s) for c, s in zip(segment, readings) if s])
        words = [word for word in words if word]
        if self.config.tone_sandhi:
            words = apply_sandhi(words, self._is_phrase, self._is_two_plus_one)
        return words

    def phonemize(self, text: str, lang: str | None = None) -> PhoneSequence:
        self._check_lang(lang)
        normalized = self.normalize(text)
        check_letters(normalized, _is_readable, "The pypinyin (Mandarin) frontend", "Chinese characters")
        phones: list[Phone] = []
        for piece in re.split(r"(\s+|[^\s\w])", normalized):
            if not piece or piece.isspace():
                continue
            boundary = punctuation_phone(piece) if len(piece) == 1 else None
            if boundary is not None:
                phones.append(boundary)
                continue
            for han in _HAN_RE.findall(piece):
                for word in self.syllables(han):
                    for _, syllable in word:
                        phones.extend(Phone(symbol, LANG) for symbol in split_syllable(syllable))
        phones = collapse_boundaries(phones)
        if not any(phone.lang == LANG for phone in phones):
            raise TextError(f"Nothing pronounceable in Mandarin text {text!r}.")
        return phones

    def _is_phrase(self, word: str) -> bool:
        return word in self._phrases

    @functools.lru_cache(maxsize=4096)
    def _is_two_plus_one(self, word: str) -> bool:
        """Whether a three-character word is structured 2+1 (展览|馆) rather than 1+2 (小|老虎)."""
        head, tail = word[:2], word[1:]
        frequency = self._jieba.get_FREQ
        return (frequency(head) or 0) >= (frequency(tail) or 0)

    @staticmethod
    def _check_lang(lang: str | None) -> None:
        if lang not in (None, LANG):
            raise TextError(f"The pypinyin frontend handles Mandarin ('zh') only, not {lang!r}.")
