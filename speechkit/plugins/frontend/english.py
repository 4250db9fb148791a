"""``g2p_en`` frontend: English text -> ARPAbet phones with stress (``en:AH0``, ``en:K``...).

Pipeline: :func:`~speechkit.text.english.normalize_english` -> Latin letters in ASCII (accents
dropped, ``ß`` -> ``ss``: :func:`~speechkit.text.scripts.ascii_latin`; letters of other scripts
are a :class:`~speechkit.errors.TextError` that names them) -> tokens (words, with hyphenated
words split and apostrophes kept) -> a part-of-speech tag per word (NLTK's tagger on the offline
data of :mod:`speechkit.text.nltk_data`, refined from context by
:mod:`speechkit.text.english_homographs`) -> per word: homograph rule, acronym spelling, CMU
dictionary, camel-case split (``iPhone``), possessive ``'s``, and finally ``g2p_en``'s neural model
for out-of-vocabulary words. Punctuation becomes ``<sp>``/``<sil>``.

The NLTK data folder is ``$NLTK_DATA`` if set, else ``~/.cache/speechkit/nltk_data``; it is built
offline on first use, so ``g2p_en`` never tries to download anything.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

from speechkit.errors import MissingDependencyError, TextError
from speechkit.interfaces.frontend import Frontend, Phone, PhoneSequence
from speechkit.registry import FRONTEND
from speechkit.text.boundaries import collapse_boundaries, punctuation_phone
from speechkit.text.english import normalize_english
from speechkit.text.english_homographs import homograph_pronunciation, refine_tag
from speechkit.text.nltk_data import ensure_nltk_data
from speechkit.text.scripts import ascii_latin, check_letters

LANG = "en"
#: ARPAbet phones with stress: the full inventory this frontend can emit.
ARPABET: tuple[str, ...] = tuple(
    [f"{vowel}{stress}" for vowel in "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split() for stress in "012"]
    + "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split()
)
LETTER_NAMES: dict[str, str] = {
    "a": "EY1", "b": "B IY1", "c": "S IY1", "d": "D IY1", "e": "IY1", "f": "EH1 F", "g": "JH IY1",
    "h": "EY1 CH", "i": "AY1", "j": "JH EY1", "k": "K EY1", "l": "EH1 L", "m": "EH1 M", "n": "EH1 N",
    "o": "OW1", "p": "P IY1", "q": "K Y UW1", "r": "AA1 R", "s": "EH1 S", "t": "T IY1", "u": "Y UW1",
    "v": "V IY1", "w": "D AH1 B AH0 L Y UW0", "x": "EH1 K S", "y": "W AY1", "z": "Z IY1",
}
#: Upper-case words read letter by letter although the lower-case word is in the dictionary.
SPELLED_WHEN_UPPER = frozenset("US UK EU UN AI TV PC ID IT CEO CPU GPU DNA BBC".split())
_TOKEN_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[^\sA-Za-z']")
_HYPHEN_IN_WORD_RE = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z])")
_CAMEL_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_VOICELESS = frozenset("P T K F TH".split())
_SIBILANTS = frozenset("S Z SH ZH CH JH".split())


def _import_g2p_en() -> Any:
    ensure_nltk_data()  # before the import: g2p_en checks (and would download) NLTK data on import
    try:
        import g2p_en
        import nltk
    except ImportError as error:
        raise MissingDependencyError(
            "The g2p_en frontend needs g2p_en and nltk: pip install 'g2p_en>=2.1,<3' 'nltk>=3.8,<4' "
            "(or pip install -e '.[text]')."
        ) from error
    return g2p_en, nltk


@FRONTEND.register("g2p_en")
class EnglishFrontend(Frontend):
    """English G2P through ``g2p_en`` (CMU dictionary + neural OOV model), offline.

    Args:
        config: :class:`EnglishFrontend.Config`.
    """

    @dataclasses.dataclass
    class Config:
        #: read all-caps words missing from the dictionary (and :data:`SPELLED_WHEN_UPPER`) letter by letter
        spell_acronyms: bool = True

    def __init__(self, config: "EnglishFrontend.Config | None" = None, **context: Any) -> None:
        super().__init__(config, **context)
        g2p_en, nltk = _import_g2p_en()
        self._g2p = g2p_en.G2p()
        self._pos_tag = nltk.pos_tag

    @property
    def languages(self) -> Sequence[str]:
        return (LANG,)

    def inventory(self) -> list[str]:
        """Every phone token this frontend can emit (``en:AA0`` ...)."""
        return [Phone(symbol, LANG).token for symbol in ARPABET]

    def normalize(self, text: str, lang: str | None = None) -> str:
        self._check_lang(lang)
        return normalize_english(text)

    def phonemize(self, text: str, lang: str | None = None) -> PhoneSequence:
        self._check_lang(lang)
        # hyphenated words are read as separate words, without a pause
        normalized = _HYPHEN_IN_WORD_RE.sub(" ", ascii_latin(self.normalize(text)))
        check_letters(normalized, _is_ascii_letter, "The g2p_en (English) frontend", "Latin letters")
        tokens = _TOKEN_RE.findall(normalized)
        words = [token for token in tokens if token[0].isalpha()]
        tags = [tag for _, tag in self._pos_tag([w.lower() for w in words])] if words else []
        all_caps = bool(words) and all(w.isupper() for w in words if len(w) > 1)
        phones: list[Phone] = []
        word_index = 0
        for token in tokens:
            if not token[0].isalpha():
                boundary = punctuation_phone(token)
                if boundary is not None:
                    phones.append(boundary)
                continue
            symbols = self.word_phones(words, tags, word_index, sentence_in_caps=all_caps)
            phones.extend(Phone(symbol, LANG) for symbol in symbols)
            word_index += 1
        phones = collapse_boundaries(phones)
        if not any(phone.lang == LANG for phone in phones):
            raise TextError(f"Nothing pronounceable in English text {text!r}.")
        return phones

    def word_phones(
        self, words: Sequence[str], tags: Sequence[str], index: int, sentence_in_caps: bool = False
    ) -> list[str]:
        """ARPAbet symbols of ``words[index]`` given the sentence's words and NLTK tags."""
        word = words[index]
        lower = word.lower()
        homograph = homograph_pronunciation([w.lower() for w in words], tags, index)
        if homograph is not None:
            return homograph
        if self.config.spell_acronyms and not sentence_in_caps and word.isupper() and len(word) > 1:
            if word in SPELLED_WHEN_UPPER or lower not in self._g2p.cmu:
                return self.spell(word)
        if lower in self._g2p.homograph2features:
            verb_pron, other_pron, pos = self._g2p.homograph2features[lower]
            tag = refine_tag([w.lower() for w in words], tags, index)
            return list(verb_pron if tag.startswith(pos) else other_pron)
        return self.lookup(word)

    def lookup(self, word: str) -> list[str]:
        """ARPAbet of one word without context: dictionary, camel-case parts, possessive, or the
        neural model."""
        lower = word.lower()
        if lower in self._g2p.cmu:
            return list(self._g2p.cmu[lower][0])
        parts = _CAMEL_RE.findall(word)
        if len(parts) > 1:
            return [symbol for part in parts for symbol in self.lookup(part)]
        if lower.endswith("'s") and len(lower) > 2:
            stem = self.lookup(word[:-2])
            return stem + _possessive_suffix(stem[-1] if stem else "")
        if len(lower) == 1:
            return LETTER_NAMES[lower].split()
        return [p for p in self._g2p.predict(re.sub("[^a-z]", "", lower)) if p in ARPABET]

    def spell(self, word: str) -> list[str]:
        """Letter names: ``"FBI"`` -> ``EH1 F B IY1 AY1``."""
        return [symbol for char in word.lower() if char in LETTER_NAMES for symbol in LETTER_NAMES[char].split()]

    @staticmethod
    def _check_lang(lang: str | None) -> None:
        if lang not in (None, LANG):
            raise TextError(f"The g2p_en frontend handles English ('en') only, not {lang!r}.")


def _is_ascii_letter(char: str) -> bool:
    """The dictionary and the neural model know ASCII letters only (see :func:`ascii_latin`)."""
    return char.isascii()


def _possessive_suffix(last_phone: str) -> list[str]:
    if last_phone in _SIBILANTS:
        return ["IH0", "Z"]
    return ["S"] if last_phone in _VOICELESS else ["Z"]
