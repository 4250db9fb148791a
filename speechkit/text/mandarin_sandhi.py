"""Mandarin tone sandhi and context polyphone fixes on segmented, toned pinyin.

Input is one sentence as a list of words (from jieba); each word is a list of ``(char, syllable)``
with TONE3 syllables (``"ni3"``, ``"de5"``) as ``pypinyin`` read them. Rules, in order:

1. polyphones pypinyin reads out of context: 得 (de5 after a verb, dei3 after a pronoun),
   地 (de5 as the adverbial particle), 长 (chang2 after a degree adverb), 还 (huan2 before
   钱/书/债...), 了 (le5 word-finally);
2. 不: bu2 before a fourth tone, bu5 between repeated verbs (是不是);
3. 一: yi1 in numbers, ordinals, dates and word-finally; yi5 between repeated verbs (看一看);
   otherwise yi2 before a fourth tone and yi4 before tones 1-3;
4. third tone: within a word 3-3 -> 2-3 (three-syllable words by their internal structure), and
   across a word boundary when one of the two words is a single syllable (a prosodic word):
   我很好 -> wo2 hen2 hao3.

Tone conditions always look at the underlying (dictionary) tone of the next syllable.
"""
from __future__ import annotations

from typing import Callable

Word = list[tuple[str, str]]

NUMERALS = frozenset("零〇一二两三四五六七八九十百千万亿几")
DIGIT_NUMERALS = frozenset("零〇一二三四五六七八九十")
PRONOUNS = frozenset("我 你 他 她 它 我们 你们 他们 她们 咱们 大家 谁".split())
DEGREE_ADVERBS = frozenset("很 太 真 更 最 非常 特别 挺 比较 较 多 这么 那么 不 好".split())
RETURN_OBJECTS = frozenset("钱书债款给")
ONE_AS_NUMBER_FOLLOWERS = frozenset("月号日楼层年")


def tone(syllable: str) -> int:
    """The tone digit of a TONE3 syllable (5 = neutral)."""
    return int(syllable[-1]) if syllable and syllable[-1].isdigit() else 5


def with_tone(syllable: str, new_tone: int) -> str:
    """``syllable`` with its tone replaced: ``with_tone("ni3", 2) == "ni2"``."""
    base = syllable[:-1] if syllable and syllable[-1].isdigit() else syllable
    return f"{base}{new_tone}"


def fix_polyphones(words: list[Word], is_phrase: Callable[[str], bool]) -> list[Word]:
    """Context readings of 得, 地, 长, 了 (see module docstring). ``is_phrase(word)`` tells whether
    pypinyin read the word from its phrase dictionary (then its reading is trusted)."""
    result = [list(word) for word in words]
    for index, word in enumerate(result):
        text = "".join(char for char, _ in word)
        previous = "".join(c for c, _ in result[index - 1]) if index else ""
        following = "".join(c for c, _ in result[index + 1]) if index + 1 < len(result) else ""
        if text == "得":
            word[0] = ("得", "dei3" if previous in PRONOUNS and following else "de5")
        elif text == "地" and previous and following:
            word[0] = ("地", "de5")
        elif text == "长" and previous in DEGREE_ADVERBS:
            word[0] = ("长", "chang2")
        elif text == "还" and following[:1] in RETURN_OBJECTS:
            word[0] = ("还", "huan2")
        elif len(word) > 1 and not is_phrase(text):
            for position, (char, syllable) in enumerate(word):
                if char == "长" and position > 0 and word[position - 1][0] in DEGREE_ADVERBS:
                    word[position] = (char, "chang2")
                elif char == "得" and position > 0:
                    word[position] = (char, "de5")
                elif char == "了" and position == len(word) - 1:
                    word[position] = (char, "le5")
    return result


def _flatten(words: list[Word]) -> list[tuple[str, str]]:
    return [pair for word in words for pair in word]


def _regroup(flat: list[tuple[str, str]], words: list[Word]) -> list[Word]:
    grouped, start = [], 0
    for word in words:
        grouped.append(flat[start:start + len(word)])
        start += len(word)
    return grouped


def bu_sandhi(words: list[Word]) -> list[Word]:
    """不 -> bu2 before an underlying fourth tone; bu5 in A不A."""
    flat = _flatten(words)
    original = [syllable for _, syllable in flat]
    for i, (char, syllable) in enumerate(flat):
        if char != "不" or i + 1 >= len(flat):
            continue
        if 0 < i and flat[i - 1][0] == flat[i + 1][0]:
            flat[i] = (char, "bu5")
        elif tone(original[i + 1]) == 4:
            flat[i] = (char, "bu2")
        else:
            flat[i] = (char, "bu4")
    return _regroup(flat, words)


def yi_sandhi(words: list[Word]) -> list[Word]:
    """一 -> yi1 / yi5 / yi2 / yi4 by context (see module docstring)."""
    flat = _flatten(words)
    original = [syllable for _, syllable in flat]
    for i, (char, _) in enumerate(flat):
        if char != "一":
            continue
        previous = flat[i - 1][0] if i > 0 else ""
        following = flat[i + 1][0] if i + 1 < len(flat) else ""
        if not following or previous == "第" or previous in DIGIT_NUMERALS or following in DIGIT_NUMERALS \
                or following in ONE_AS_NUMBER_FOLLOWERS:
            flat[i] = (char, "yi1")
        elif previous and previous == following:
            flat[i] = (char, "yi5")
        elif tone(original[i + 1]) in (4, 5):
            flat[i] = (char, "yi2")
        else:
            flat[i] = (char, "yi4")
    return _regroup(flat, words)


def _third_tone_in_word(word: Word, split_first_two: Callable[[str], bool]) -> Word:
    syllables = [syllable for _, syllable in word]
    tones = [tone(s) for s in syllables]
    if len(word) == 3 and tones == [3, 3, 3]:
        text = "".join(char for char, _ in word)
        # 展览馆 (2+1) -> 2 2 3; 小老虎 (1+2) -> 3 2 3
        changed = [2, 2] if split_first_two(text) else [3, 2]
        syllables = [with_tone(syllables[0], changed[0]), with_tone(syllables[1], changed[1]), syllables[2]]
    else:
        for i in range(len(syllables) - 1):
            if tones[i] == 3 and tones[i + 1] == 3:
                syllables[i] = with_tone(syllables[i], 2)
    return [(char, syllable) for (char, _), syllable in zip(word, syllables)]


def third_tone_sandhi(words: list[Word], split_first_two: Callable[[str], bool]) -> list[Word]:
    """3-3 -> 2-3 within words and across a boundary next to a one-syllable word.

    ``split_first_two(word)`` tells whether a three-syllable word is structured 2+1.
    """
    underlying = [[tone(s) for _, s in word] for word in words]
    result = [_third_tone_in_word(word, split_first_two) for word in words]
    for index in range(len(result) - 1):
        left, right = result[index], result[index + 1]
        if not left or not right:
            continue
        short = len(left) == 1 or len(right) == 1
        if short and underlying[index][-1] == 3 and underlying[index + 1][0] == 3 and tone(left[-1][1]) == 3:
            char, syllable = left[-1]
            left[-1] = (char, with_tone(syllable, 2))
    return result


def apply_sandhi(
    words: list[Word], is_phrase: Callable[[str], bool], split_first_two: Callable[[str], bool]
) -> list[Word]:
    """All rules in order: polyphones, 不, 一, third tone."""
    words = fix_polyphones(words, is_phrase)
    words = bu_sandhi(words)
    words = yi_sandhi(words)
    return third_tone_sandhi(words, split_first_two)
