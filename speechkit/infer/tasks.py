"""The evaluation tasks of stage 7 and the items each runs over the test speakers.

Every item names its prompt, its target text, the same speaker's *real* utterance of that
sentence in the target language (``reference_wav``) and real target-language utterances of other
test speakers (``other_speaker_wavs``), so stage 8 scores every task row the same way: WER/CER
against ``text``, speaker similarity of the output to the prompt, to the reference and to the
other speakers (the margin), ASR-BLEU for S2ST.

Tasks (``zh2en`` = Chinese prompt/source, English output):

==========================  =====================================================================
``ground_truth``            no synthesis: the real target utterance (both languages)
``resynth``                 codec encode -> decode of the real utterance (the codec's upper bound)
``zs_en``, ``zs_zh``        zero-shot TTS: prompt = another utterance of the speaker, same language
``xl_zh2en``, ``xl_en2zh``  cross-lingual TTS: prompt = the speaker's utterance of the sentence pair
                            in the source language, text = its translation, target language ID
``xl_*_nolid``              the same with the *source* language ID (the paper's LID analysis)
``s2st_zh2en``, ...         S2ST with the ST frontend (source speech is the prompt)
``s2st_oracle_zh2en``, ...  S2ST with the oracle source transcript and target translation
``nar_oracle_en``, ``_zh``  no AR: the NAR and vocoder given the real utterance's level-1 codes and
                            its aligned phones (``dump/<set>/durations``), prompt as ``zs_*``: the
                            upper bound of the AR model, and the NAR's own loss
==========================  =====================================================================
"""
from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from typing import Any

from speechkit.data.datadir import DataDir
from speechkit.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a task does: ``kind`` is ``ground_truth``, ``resynth``, ``zero_shot``,
    ``cross_lingual``, ``s2st``, ``s2st_oracle`` or ``nar_oracle``; ``source``/``target`` are the prompt and output
    languages (``None``: both languages); ``source_lid`` gives the AR the source language ID."""

    kind: str
    source: str | None = None
    target: str | None = None
    source_lid: bool = False

    @property
    def needs_st(self) -> bool:
        """Whether the task needs the ST frontend in the pipeline pack."""
        return self.kind == "s2st"


TASKS: dict[str, TaskSpec] = {
    "ground_truth": TaskSpec("ground_truth"),
    "resynth": TaskSpec("resynth"),
    "zs_en": TaskSpec("zero_shot", "en", "en"),
    "zs_zh": TaskSpec("zero_shot", "zh", "zh"),
    "xl_zh2en": TaskSpec("cross_lingual", "zh", "en"),
    "xl_en2zh": TaskSpec("cross_lingual", "en", "zh"),
    "xl_zh2en_nolid": TaskSpec("cross_lingual", "zh", "en", source_lid=True),
    "xl_en2zh_nolid": TaskSpec("cross_lingual", "en", "zh", source_lid=True),
    "s2st_zh2en": TaskSpec("s2st", "zh", "en"),
    "s2st_en2zh": TaskSpec("s2st", "en", "zh"),
    "s2st_oracle_zh2en": TaskSpec("s2st_oracle", "zh", "en"),
    "s2st_oracle_en2zh": TaskSpec("s2st_oracle", "en", "zh"),
    "nar_oracle_en": TaskSpec("nar_oracle", "en", "en"),
    "nar_oracle_zh": TaskSpec("nar_oracle", "zh", "zh"),
}


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of task ``name``.

    Raises:
        ConfigError: unknown task (lists the known ones).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"Unknown inference task {name!r}; known: {', '.join(TASKS)}.") from None


@dataclasses.dataclass
class TaskItem:
    """One output to make (or, for ``ground_truth``, to point at). Fields as in items.jsonl."""

    id: str
    task: str
    speaker: str
    pair: str
    lang: str
    text: str
    source_lang: str
    source_text: str
    lid: str
    prompt_utt: str
    prompt_wav: str
    prompt_text: str
    reference_utt: str
    reference_wav: str
    other_speaker_wavs: list[str]
    #: The speaker's real speech in ``lang`` for speaker similarity: another sentence than
    #: ``reference_wav`` (and than a same-language prompt) when the speaker has one (else
    #: ``reference_wav``), so no row is compared with its own reference or prompt.
    same_speaker_wav: str = ""

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dataclasses.asdict(self)


class TestSet:
    """Index of a test data dir by speaker, sentence pair and language."""

    def __init__(self, data: DataDir) -> None:
        pairs = data.extra.get("utt2pair")
        if pairs is None:
            raise DataError(f"{data.path} has no utt2pair: stage 7 needs the sentence pairs of stage 1.")
        self.data = data
        self.utt: dict[tuple[str, str, str], str] = {}
        self.pairs_of: dict[str, list[str]] = defaultdict(list)
        for utt in data.utts:
            speaker, pair, lang = data.utt2spk[utt], pairs.get(utt), data.utt2lang[utt]
            if pair is None:
                raise DataError(f"{data.path}/utt2pair lacks {utt}.")
            self.utt[(speaker, pair, lang)] = utt
            if pair not in self.pairs_of[speaker]:
                self.pairs_of[speaker].append(pair)
        self.speakers = sorted(self.pairs_of)

    def find(self, speaker: str, pair: str, lang: str) -> str | None:
        """The utterance of ``pair`` in ``lang`` by ``speaker``, if recorded."""
        return self.utt.get((speaker, pair, lang))

    def pairs_in(self, speaker: str, *langs: str) -> list[str]:
        """Sorted pairs the speaker recorded in every one of ``langs``."""
        return sorted(p for p in self.pairs_of[speaker] if all(self.find(speaker, p, lang) for lang in langs))

    def others(self, speaker: str, pair: str, lang: str, count: int) -> list[str]:
        """Wavs of up to ``count`` other speakers in ``lang``: their utterance of the same pair
        when they have one, else their first utterance in ``lang``."""
        index = self.speakers.index(speaker)
        rotated = self.speakers[index + 1 :] + self.speakers[:index]
        wavs: list[str] = []
        for other in rotated:
            utt = self.find(other, pair, lang) or next(
                (self.find(other, p, lang) for p in self.pairs_in(other, lang)), None)
            if utt is not None:
                wavs.append(self.data.wav_scp[utt])
            if len(wavs) == count:
                break
        return wavs


def build_items(name: str, data: DataDir, max_items: int, num_other_speakers: int = 3) -> list[TaskItem]:
    """The items of task ``name`` over the speakers of ``data``, taking speakers in turn (so a
    small ``max_items`` still covers every speaker), at most ``max_items`` per target language
    (0 = all): a two-language task (``ground_truth``, ``resynth``) gets as many items in each
    language as a one-language task, so each row is scored on the same sentences as its ground truth."""
    spec, test = task_spec(name), TestSet(data)
    languages = [spec.target] if spec.target else ["en", "zh"]
    items: list[TaskItem] = []
    for lang in languages:
        per_speaker = [_speaker_items(name, spec, test, speaker, lang, num_other_speakers) for speaker in test.speakers]
        interleaved = [item for group in itertools.zip_longest(*per_speaker) for item in group if item is not None]
        items += interleaved[:max_items] if max_items > 0 else interleaved
    return items


def _speaker_items(name: str, spec: TaskSpec, test: TestSet, speaker: str, target: str,
                   num_other: int) -> list[TaskItem]:
    data = test.data
    source = spec.source or target
    same_language = source == target
    pairs = test.pairs_in(speaker, target) if same_language else test.pairs_in(speaker, source, target)
    if same_language and len(pairs) < 2:
        return []  # the prompt must be another utterance of the speaker
    items = []
    for index, pair in enumerate(pairs):
        reference = test.find(speaker, pair, target)
        prompt_pair = pairs[(index + 1) % len(pairs)] if same_language else pair
        prompt = test.find(speaker, prompt_pair, source)
        assert reference is not None and prompt is not None
        in_target = test.pairs_in(speaker, target)
        step = 2 if len(in_target) > 2 else 1  # +1 is the same-language prompt's pair: keep them apart
        same_pair = in_target[(in_target.index(pair) + step) % len(in_target)]
        same = test.find(speaker, same_pair, target) or reference
        items.append(TaskItem(
            id=reference, task=name, speaker=speaker, pair=pair, lang=target, text=data.text[reference],
            source_lang=source, source_text=data.text[prompt] if not same_language else data.text[reference],
            lid=source if spec.source_lid else target, prompt_utt=prompt, prompt_wav=data.wav_scp[prompt],
            prompt_text=data.text[prompt], reference_utt=reference, reference_wav=data.wav_scp[reference],
            other_speaker_wavs=test.others(speaker, pair, target, num_other), same_speaker_wav=data.wav_scp[same],
        ))
    return items
