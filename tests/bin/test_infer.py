"""Stage 7 on a tiny recipe dir: pack assembly, every task's items.jsonl, idempotence, no-ST runs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from speechkit.align.durations import write_durations
from speechkit.audio.io import save_audio
from speechkit.bin import infer
from speechkit.codec_io import load_codec
from speechkit.data.datadir import DataDir, write_table
from speechkit.infer.tasks import TASKS, task_spec
from speechkit.infer.tiny import build_tiny_parts, synthetic_voice
from speechkit.pack import read_manifest

TEXT = {("p1", "en"): "Yesterday was Sunday.", ("p1", "zh"): "昨天是星期日。",
        ("p2", "en"): "She is a teacher.", ("p2", "zh"): "她是老师。"}
FIELDS = {"id", "task", "speaker", "lang", "text", "source_text", "prompt_utt", "prompt_wav", "reference_wav",
          "other_speaker_wavs", "pair", "lid", "wav", "stop_reason", "error", "same_speaker_wav"}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/test (2 speakers x 2 pairs x 2 languages), dump/tokens.txt, exp/{codec,ar,nar,st}, conf."""
    root = tmp_path_factory.mktemp("recipe")
    parts = build_tiny_parts(root / "parts")
    for source, target in ((parts.codec_dir, "exp/codec"), (parts.ar_pack, "exp/ar/pack"),
                           (parts.nar_pack, "exp/nar/pack"), (parts.st_pack, "exp/st/pack"),
                           (parts.tokens, "dump/tokens.txt")):
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), root / target)
    utts = {f"{spk}-{pair}-{lang}": (spk, pair, lang) for spk in ("spkA", "spkB") for (pair, lang) in TEXT}
    for index, utt in enumerate(sorted(utts)):
        save_audio(root / "wav" / f"{utt}.wav", synthetic_voice(0.6, 110 + 15 * index, seed=index).numpy(), 16000)
    DataDir(root / "data" / "test", {utt: str(root / "wav" / f"{utt}.wav") for utt in utts},
            {utt: TEXT[(pair, lang)] for utt, (_, pair, lang) in utts.items()},
            {utt: spk for utt, (spk, _, _) in utts.items()}, {utt: lang for utt, (_, _, lang) in utts.items()},
            {"utt2pair": {utt: pair for utt, (_, pair, _) in utts.items()},
             "translation": {utt: TEXT[(pair, "zh" if lang == "en" else "en")] for utt, (_, pair, lang) in utts.items()}},
            ).save()
    # stage 2's phones and stage 4's durations (an even spread over the codec frames) for nar_oracle_*
    codec = load_codec(root / "exp" / "codec")
    phones, durations = {}, {}
    for utt, (_, pair, lang) in utts.items():
        tokens = [phone.token for phone in parts.frontend.phonemize(TEXT[(pair, lang)], lang)]
        frames = int(codec.encode(synthetic_voice(0.6, 110 + 15 * sorted(utts).index(utt),
                                                  seed=sorted(utts).index(utt))).shape[1])
        phones[utt] = " ".join(tokens)
        durations[utt] = [frames * (i + 1) // len(tokens) - frames * i // len(tokens) for i in range(len(tokens))]
    write_table(root / "data" / "test" / "phones", phones)
    write_durations(root / "dump" / "test" / "durations", durations)
    (root / "conf.yaml").write_text(
        "frontend: {name: multilingual, languages: {en: {name: g2p_en}, zh: {name: pypinyin}}}\n"
        # sampled: greedy random weights loop; English outputs are the best of 2 by the ST model
        "infer: {max_items: 2, num_other_speakers: 1, batch_size: 2, candidates: 2, candidate_languages: [en]}\n"
    )
    return root


def run(recipe: Path, *extra: str) -> int:
    return infer.main(["--config", str(recipe / "conf.yaml"), "--data", str(recipe / "data"),
                       "--dump", str(recipe / "dump"), "--exp", str(recipe / "exp"), *extra])


def read_items(recipe: Path, task: str) -> list[dict]:
    lines = (recipe / "exp" / "infer" / task / "items.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_stage7_writes_every_task_and_is_idempotent(recipe: Path) -> None:
    assert run(recipe) == 0
    assert (recipe / "exp" / "vallex_pack" / "tokens.txt").is_file()
    for task in TASKS:
        items = read_items(recipe, task)
        per_language = 2 if task_spec(task).target else 4  # ground_truth/resynth: max_items per language
        assert len(items) == per_language and {item["speaker"] for item in items} == {"spkA", "spkB"}, task
        for item in items:
            assert FIELDS <= set(item) and item["task"] == task
            assert Path(item["reference_wav"]).is_file() and Path(item["prompt_wav"]).is_file()
            assert len(item["other_speaker_wavs"]) == 1 and item["speaker"] not in item["other_speaker_wavs"][0]
            assert item["wav"] is None or Path(item["wav"]).is_file()
            assert item["wav"] is not None or item["error"]
        if task.startswith(("xl_", "zs_", "resynth", "nar_oracle")):
            assert all(item["wav"] and "/exp/infer/" in item["wav"] for item in items), task
    ground_truth = read_items(recipe, "ground_truth")
    assert all(item["wav"] == item["reference_wav"] for item in ground_truth)
    assert all(item["same_speaker_wav"] != item["wav"] and item["speaker"] in item["same_speaker_wav"]
               for item in ground_truth), "similarity to the same speaker uses another of their sentences"
    for task in ("zs_en", "xl_zh2en", "s2st_oracle_zh2en", "xl_en2zh"):  # candidates for English targets only
        for item in read_items(recipe, task):
            if item["wav"] is not None and task != "xl_en2zh":
                assert len(item["candidate_scores"]) == 2 and item["candidate"] in (0, 1), (task, item)
            else:
                assert "candidate_scores" not in item, (task, item)
    nolid = read_items(recipe, "xl_zh2en_nolid")
    assert all((item["lang"], item["lid"]) == ("en", "zh") for item in nolid)
    assert all(item["target_phones"].startswith("en:") for item in read_items(recipe, "s2st_oracle_zh2en"))
    for item in read_items(recipe, "nar_oracle_zh"):  # the reference's own length: its codes, not the AR's
        assert item["stop_reason"] == "oracle" and abs(item["seconds"] - 0.6) < 0.05
    stamps = {task: (recipe / "exp" / "infer" / task / "items.jsonl").stat().st_mtime_ns for task in TASKS}
    assert run(recipe) == 0  # a second run finds everything done
    assert stamps == {task: (recipe / "exp" / "infer" / task / "items.jsonl").stat().st_mtime_ns for task in TASKS}


def test_an_interrupted_task_resumes_after_its_finished_items(recipe: Path) -> None:
    task_dir = recipe / "exp" / "infer" / "zs_en"
    assert run(recipe, "--tasks", "zs_en") == 0
    first = read_items(recipe, "zs_en")
    key = json.loads((task_dir / ".done.items").read_text())["key"]
    (task_dir / ".done.items").unlink()
    (task_dir / "items.jsonl").unlink()
    (task_dir / "progress.jsonl").write_text(json.dumps({"key": key}) + "\n"
                                             + json.dumps({**first[0], "stop_reason": "kept"}) + "\n" + '{"id": "cut')
    assert run(recipe, "--tasks", "zs_en") == 0
    again = read_items(recipe, "zs_en")
    assert again[0]["stop_reason"] == "kept" and again[1] == first[1]
    assert not (task_dir / "progress.jsonl").exists()


def test_without_st_pack_s2st_from_speech_is_skipped(recipe: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.move(str(recipe / "exp" / "st"), recipe / "st.away")
    try:
        with caplog.at_level("WARNING"):
            assert run(recipe, "--tasks", "s2st_zh2en", "s2st_oracle_zh2en") == 0
        assert "no ST frontend" in caplog.text and "keeping one output per item" in caplog.text
        assert all("candidate_scores" not in item for item in read_items(recipe, "s2st_oracle_zh2en"))
        assert "st_frontend" not in read_manifest(recipe / "exp" / "vallex_pack")["components"]
        assert read_items(recipe, "s2st_oracle_zh2en")
    finally:
        shutil.move(str(recipe / "st.away"), recipe / "exp" / "st")


def test_unknown_task_fails_before_any_work(recipe: Path) -> None:
    assert infer.run_main(infer.main, ["--config", str(recipe / "conf.yaml"), "--tasks", "zs_fr"]) == 2


@pytest.mark.parametrize("override", ["infer.max_items=-1", "infer.temperature=-1", "infer.batch_size=0",
                                      "infer.candidates=0", "infer.max_prompt_seconds=-1"])
def test_impossible_settings_fail_before_any_work(recipe: Path, override: str) -> None:
    """max_items -1 silently meant 'all'; the synthesis settings failed only once the pipeline loaded."""
    args = ["--config", str(recipe / "conf.yaml"), "--data", str(recipe / "data"), "--dump", str(recipe / "dump"),
            "--exp", str(recipe / "exp"), "--override", override]
    before = sorted(p.name for p in (recipe / "exp").iterdir())
    assert infer.run_main(infer.main, args) == 2
    assert sorted(p.name for p in (recipe / "exp").iterdir()) == before  # not even the pipeline pack
