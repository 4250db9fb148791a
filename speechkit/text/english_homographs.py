"""Context rules that pick the pronunciation of English homographs (read, live, lead, record...).

The offline tagger is lookup-only (one tag per word, see :mod:`speechkit.text.nltk_data`), so it
cannot tell "I will *read*" from "I have *read*". :func:`refine_tags` corrects the tag of a word
from its neighbours with a few closed-class word lists (modals and "to" -> base verb; have/be ->
participle; determiners and prepositions -> noun/adjective; subject pronouns -> finite verb,
past tense when the sentence has a past-time cue or the subject is third person singular), and
:data:`HOMOGRAPHS` holds the pronunciations of the words where ``g2p_en``'s own table is missing
or wrong (its ``READ`` and ``OBJECT`` entries are inverted).
"""
from __future__ import annotations

from typing import Callable, Sequence

MODALS_AND_TO = frozenset(
    "to will would can could shall should may might must do does did don't doesn't didn't won't "
    "can't cannot couldn't wouldn't shouldn't let's please i'll you'll we'll they'll".split()
)
HAVE = frozenset("have has had 've having i've you've we've they've".split())
BE = frozenset("is are was were be been being am 're 's".split())
DETERMINERS = frozenset(
    "a an the this that these those my your his her its our their some any no every each another "
    "of in on at for with from by about new old world's".split()
)
SUBJECTS = frozenset("i you we they he she it who people".split())
THIRD_PERSON = frozenset("he she it who".split())
ADVERBS = frozenset("not never always often also just really usually still already n't".split())
PAST_CUES = frozenset("yesterday ago last earlier once previously".split())
METAL_CUES = frozenset("pipe pipes poisoning paint pencil pencils bullet bullets metal".split())


def _previous_word(words: Sequence[str], index: int) -> str:
    """The nearest preceding word that is not a light adverb ("never", "not", ...)."""
    for position in range(index - 1, -1, -1):
        word = words[position].lower()
        if word not in ADVERBS:
            return word
    return ""


def refine_tag(words: Sequence[str], tags: Sequence[str], index: int) -> str:
    """The Penn tag of ``words[index]`` corrected from its context (see module docstring)."""
    tag = tags[index]
    previous = _previous_word(words, index)
    word = words[index].lower()
    if previous in MODALS_AND_TO:
        return "VB"
    if previous in HAVE:
        return "VBN"
    if previous in BE:
        return "VBN" if word in PARTICIPLE_HOMOGRAPHS else "JJ"
    if previous in DETERMINERS:
        return "NN" if tag.startswith("V") else tag
    if previous in SUBJECTS:
        sentence = {w.lower() for w in words}
        if sentence & PAST_CUES or (previous in THIRD_PERSON and not word.endswith("s")):
            return "VBD"
        return "VBP"
    if index == 0 and index + 1 < len(words) and words[index + 1].lower() in DETERMINERS:
        return "VB"  # sentence-initial verb before a noun phrase: an imperative ("Record the song")
    return tag


def _read(tag: str, words: Sequence[str], index: int) -> list[str]:
    return "R EH1 D".split() if tag in ("VBD", "VBN") else "R IY1 D".split()


def _live(tag: str, words: Sequence[str], index: int) -> list[str]:
    return "L IH1 V".split() if tag.startswith("V") else "L AY1 V".split()


def _lead(tag: str, words: Sequence[str], index: int) -> list[str]:
    following = words[index + 1].lower() if index + 1 < len(words) else ""
    metal = not tag.startswith("V") and (
        following in METAL_CUES or _previous_word(words, index) in ("of", "with")
    )
    return "L EH1 D".split() if metal else "L IY1 D".split()


def _record(tag: str, words: Sequence[str], index: int) -> list[str]:
    return "R IH0 K AO1 R D".split() if tag.startswith("V") else "R EH1 K ER0 D".split()


def _wind(tag: str, words: Sequence[str], index: int) -> list[str]:
    return "W AY1 N D".split() if tag.startswith("V") else "W IH1 N D".split()


def _object(tag: str, words: Sequence[str], index: int) -> list[str]:
    return "AH0 B JH EH1 K T".split() if tag.startswith("V") else "AA1 B JH EH0 K T".split()


#: Homographs decided here; others go through ``g2p_en``'s own table with the refined tag.
HOMOGRAPHS: dict[str, Callable[[str, Sequence[str], int], list[str]]] = {
    "read": _read, "live": _live, "lead": _lead, "record": _record, "wind": _wind,
    "object": _object,
}
#: Homographs whose past participle differs from the base form (read -> /rɛd/).
PARTICIPLE_HOMOGRAPHS = frozenset({"read"})


def homograph_pronunciation(words: Sequence[str], tags: Sequence[str], index: int) -> list[str] | None:
    """ARPAbet for ``words[index]`` if it is one of :data:`HOMOGRAPHS`, else None."""
    rule = HOMOGRAPHS.get(words[index].lower())
    if rule is None:
        return None
    return rule(refine_tag(words, tags, index), words, index)
