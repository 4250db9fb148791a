"""Stage 6 end to end on a tiny tone 'corpus': train, eval.json, pack, idempotent rerun, resume,
config errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.bin import train_st
from speechkit.data.datadir import read_table, write_table
from speechkit.errors import ConfigError
from speechkit.pack import load_pack
from speechkit.text.phone_table import PhoneTable

PHONES = ["en:AA", "en:B", "en:K", "en:S", "zh:a1", "zh:b", "zh:i2", "zh:m"]
PAIRS = {"p1": ("ab", "en:AA en:B <sil>", "八", "zh:b zh:a1 <sil>"), "p2": ("sk", "en:S en:K", "米", "zh:m zh:i2")}
TINY_MODEL = {"name": "transformer_st", "d_model": 32, "num_heads": 2, "ffn_dim": 64, "encoder_layers": 1,
              "decoder_layers": 1, "conv_channels": 8, "num_mels": 40, "dropout": 0.0}


def make_set(root: Path, speakers: list[str]) -> None:
    """Every speaker reads both pairs in both languages; each phone is a 160 ms tone."""
    root.mkdir(parents=True)
    tables: dict[str, dict[str, str]] = {n: {} for n in ("wav.scp", "text", "utt2spk", "utt2lang", "translation", "phones")}
    t = np.arange(2560) / 16000
    for number, speaker in enumerate(speakers):
        for pair, (en_text, en_phones, zh_text, zh_phones) in PAIRS.items():
            for lang, text, phones, translation in (("en", en_text, en_phones, zh_text), ("zh", zh_text, zh_phones, en_text)):
                utt = f"{speaker}-{pair}-{lang}"
                wav = np.concatenate([0.4 * np.sin(2 * math.pi * (300 + 120 * PHONES.index(p) + 15 * number) * t)
                                      for p in phones.split() if p in PHONES]).astype(np.float32)
                sf.write(root / f"{utt}.wav", wav, 16000)
                tables["wav.scp"][utt], tables["utt2spk"][utt], tables["utt2lang"][utt] = str(root / f"{utt}.wav"), speaker, lang
                tables["text"][utt], tables["translation"][utt], tables["phones"][utt] = text, translation, phones
    for name, table in tables.items():
        write_table(root / name, table)
    write_table(root / "spk2utt", {s: " ".join(sorted(u for u in tables["utt2spk"] if u.startswith(s))) for s in speakers})


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    make_set(tmp_path / "data" / "train", ["spka", "spkb"])
    make_set(tmp_path / "data" / "dev", ["spkc"])
    PhoneTable(PHONES).save(tmp_path / "dump" / "tokens.txt")
    (tmp_path / "conf.yaml").write_text(json.dumps({
        "frontend": {"name": "pypinyin"},
        "st_frontend": TINY_MODEL,
        "st_train": {"max_steps": 6, "lr": 3e-3, "warmup_steps": 2, "checkpoint_every": 3, "log_every": 1,
                     "keep_last": 2, "average_last": 2, "progress": False, "max_frames": 400, "num_buckets": 1, "seed": 1,
                     "feature_shard_size": 5, "eval_max_utts": 0},
    }))
    return tmp_path


def run(root: Path, *extra: str) -> int:
    return train_st.main(["--config", str(root / "conf.yaml"), "--data", str(root / "data"), "--dump",
                          str(root / "dump"), "--exp", str(root / "exp"), *extra])


def test_stage_trains_evaluates_packs_and_reruns_as_a_no_op(recipe: Path) -> None:
    assert run(recipe) == 0
    exp = recipe / "exp" / "st"
    for name in ("config.yaml", "resume.sh", "train_log.jsonl", "averaged.pt", "eval.json", ".done.st"):
        assert (exp / name).is_file(), name
    assert "speechkit.bin.train_st" in (exp / "resume.sh").read_text()
    report = json.loads((exp / "eval.json").read_text())
    assert report["step"] == 6 and report["set"] == "dev" and report["utterances"] == 4
    assert set(report["asr"]) == {"en", "zh"} and set(report["st"]) == set(report["mt"]) == {"en->zh", "zh->en"}
    assert all(value["n"] == 2 and value["per"] >= 0 for value in report["asr"].values())
    assert all(value["n"] == 2 for value in report["mt"].values())  # two distinct texts per direction
    phones = read_table(recipe / "data" / "dev" / "phones")
    translations = read_table(recipe / "data" / "dev" / "translation")
    for example in report["examples"]:  # references without pauses; the translation is the other reading's phones
        utt = example["utt"]
        assert example["source"] == phones[utt].replace(" <sil>", "")
        other = utt[:-2] + ("zh" if utt.endswith("en") else "en")
        assert example["translation"] == phones[other].replace(" <sil>", "") and translations[utt]
    records = [json.loads(line) for line in (exp / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert any(r["split"] == "valid" for r in records)  # validated at each epoch end

    pack = load_pack(exp / "pack")
    model = pack["st_frontend"]
    assert (exp / "pack" / "tokens.txt").read_text() == (recipe / "dump" / "tokens.txt").read_text()
    assert pack.extra["training"]["step"] == 6 and "asr" in pack.extra["eval"]
    wav, rate = sf.read(recipe / "data" / "dev" / "spkc-p1-en.wav", dtype="float32")
    phones = model.recognize(torch.from_numpy(wav), rate)
    assert all(phone.token in PhoneTable(PHONES).tokens for phone in phones)
    assert isinstance(model.translate(torch.from_numpy(wav), rate, "zh"), list)

    stamp = (exp / "pack" / "pack.yaml").stat().st_mtime_ns
    assert run(recipe) == 0  # done: nothing is retrained
    assert (exp / "pack" / "pack.yaml").stat().st_mtime_ns == stamp


def test_killed_run_resumes_and_more_steps_continue(recipe: Path) -> None:
    assert run(recipe, "--override", "st_train.max_steps=3") == 0  # as if killed after checkpoint 3
    exp = recipe / "exp" / "st"
    (exp / ".done.st").unlink()
    assert run(recipe) == 0  # max_steps is resumable: continues from step 3
    records = [json.loads(line) for line in (exp / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert json.loads((exp / "eval.json").read_text())["step"] == 6
    with pytest.raises(ConfigError, match="another model"):  # a different model cannot resume those checkpoints
        (exp / ".done.st").unlink()
        run(recipe, "--override", "st_frontend.d_model=64")


def test_bad_options_are_named(recipe: Path) -> None:
    with pytest.raises(ConfigError, match="unknown task"):
        run(recipe, "--override", "st_train.tasks.tts=1")
    with pytest.raises(ConfigError, match="max_frame"):
        run(recipe, "--override", "st_train.max_frame=10")
