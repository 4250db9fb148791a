"""Stage-7 task items: prompts, references and other speakers chosen as each task defines."""
from __future__ import annotations

from pathlib import Path

import pytest

from speechkit.data.datadir import DataDir
from speechkit.errors import ConfigError
from speechkit.infer.tasks import build_items

TEXT = {("p1", "en"): "Yesterday was Sunday.", ("p1", "zh"): "昨天是星期日。",
        ("p2", "en"): "She is a teacher.", ("p2", "zh"): "她是老师。",
        ("p3", "en"): "I like tea.", ("p3", "zh"): "我喜欢茶。"}


def make_test_set(speakers: tuple[str, ...] = ("spkA", "spkB", "spkC")) -> DataDir:
    utts = {f"{spk}-{pair}-{lang}": (spk, pair, lang) for spk in speakers for (pair, lang) in TEXT}
    return DataDir(
        Path("data/test"),
        wav_scp={utt: f"wav/{utt}.wav" for utt in utts},
        text={utt: TEXT[(pair, lang)] for utt, (_, pair, lang) in utts.items()},
        utt2spk={utt: spk for utt, (spk, _, _) in utts.items()},
        utt2lang={utt: lang for utt, (_, _, lang) in utts.items()},
        extra={"utt2pair": {utt: pair for utt, (_, pair, _) in utts.items()}},
    )


def test_zero_shot_prompt_is_another_utterance_of_the_speaker_in_the_same_language() -> None:
    items = build_items("zs_en", make_test_set(), max_items=0, num_other_speakers=2)
    assert len(items) == 9
    for item in items:
        assert item.prompt_utt != item.id and item.prompt_utt.startswith(item.speaker) and item.prompt_utt.endswith("-en")
        assert item.reference_utt == item.id and item.lang == item.lid == "en" and item.text == TEXT[(item.pair, "en")]
        assert len(item.other_speaker_wavs) == 2 and not any(item.speaker in wav for wav in item.other_speaker_wavs)
        assert all(f"-{item.pair}-en" in wav for wav in item.other_speaker_wavs)  # same sentence, other voices


def test_cross_lingual_uses_the_pair_in_the_source_language_and_the_lid_choice() -> None:
    for task, lid in (("xl_zh2en", "en"), ("xl_zh2en_nolid", "zh")):
        for item in build_items(task, make_test_set(), max_items=0):
            assert item.prompt_utt == f"{item.speaker}-{item.pair}-zh" and item.id == f"{item.speaker}-{item.pair}-en"
            assert (item.source_text, item.text, item.lid) == (TEXT[(item.pair, "zh")], TEXT[(item.pair, "en")], lid)


def test_s2st_source_speech_is_the_prompt_and_max_items_takes_speakers_in_turn() -> None:
    items = build_items("s2st_en2zh", make_test_set(), max_items=4)
    assert [item.speaker for item in items] == ["spkA", "spkB", "spkC", "spkA"]
    assert all(item.prompt_utt.endswith("-en") and item.lang == "zh" for item in items)


def test_ground_truth_and_resynth_cover_both_languages() -> None:
    items = build_items("ground_truth", make_test_set(("spkA",)), max_items=0)
    assert sorted(item.lang for item in items) == ["en"] * 3 + ["zh"] * 3
    assert build_items("resynth", make_test_set(("spkA",)), max_items=2)[0].other_speaker_wavs == []


def test_two_language_tasks_take_max_items_per_language_on_the_sentences_of_the_others() -> None:
    data = make_test_set()
    truth = build_items("ground_truth", data, max_items=4)
    assert sorted(item.lang for item in truth) == ["en"] * 4 + ["zh"] * 4
    for task, lang in (("zs_en", "en"), ("xl_en2zh", "zh")):
        assert [item.id for item in truth if item.lang == lang] == [item.id for item in build_items(task, data, max_items=4)]


def test_unknown_task_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="zs_fr"):
        build_items("zs_fr", make_test_set(), max_items=1)
