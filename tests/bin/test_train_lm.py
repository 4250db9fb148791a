"""Stages 4 and 5 (train_ar, train_nar) end to end on a tiny synthetic recipe: no audio, tiny models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from speechkit.bin import train_ar, train_nar
from speechkit.bin.lm_training import run_stage
from speechkit.data import tokens
from speechkit.data.datadir import DataDir
from speechkit.errors import ConfigError, DataError
from speechkit.pack import load_pack
from speechkit.text.phone_table import PhoneTable
from speechkit.train import list_checkpoints, read_log

LEVELS, CODEBOOK = 3, 16
PHONES = {"en": ["en:AH0", "en:B", "en:K", "en:S", "en:T"], "zh": ["zh:a1", "zh:b", "zh:i4", "zh:sh", "zh:u3"]}


def _write_set(root: Path, set_name: str, speakers: list[str], per_lang: int, seed: int) -> None:
    """data/<set> with phones and dump/<set>/codes.scp: level-1 codes follow the phones (learnable)."""
    generator = torch.Generator().manual_seed(seed)
    utts = [f"{spk}-{set_name}{i:02d}-{lang}" for spk in speakers for i in range(per_lang) for lang in ("en", "zh")]
    phones, codes = {}, {}
    for utt in utts:
        lang = utt.rsplit("-", 1)[1]
        picks = torch.randint(0, 5, (int(torch.randint(3, 6, (1,), generator=generator)),), generator=generator)
        phones[utt] = " ".join(PHONES[lang][p] for p in picks.tolist())
        level1 = (picks + (5 if lang == "zh" else 0)).repeat_interleave(2)  # 2 frames per phone
        rest = torch.randint(0, CODEBOOK, (LEVELS - 1, len(level1)), generator=generator)
        codes[utt] = torch.cat([level1.unsqueeze(0), rest])
    DataDir(root / "data" / set_name, {u: f"/nowhere/{u}.wav" for u in utts}, {u: "x" for u in utts},
            {u: u.split("-")[0] for u in utts}, {u: u.rsplit("-", 1)[1] for u in utts}, {"phones": phones}).save()
    dump = root / "dump" / set_name
    tokens.write_codes_shard(codes.items(), dump / "codes.0.ark", dump / tokens.CODES_SCP, codebook_size=CODEBOOK)


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    """A recipe dir after stages 1-3: data/{train,dev}, dump/{train,dev}, tokens.txt, codec_info.json."""
    _write_set(tmp_path, "train", ["spkA", "spkB", "spkC"], per_lang=4, seed=0)
    _write_set(tmp_path, "dev", ["spkD", "spkE"], per_lang=2, seed=1)
    PhoneTable(PHONES["en"] + PHONES["zh"]).save(tmp_path / "dump" / "tokens.txt")
    info = {"name": "fake", "sample_rate": 16000, "frame_rate": 10.0, "num_quantizers": LEVELS,
            "codebook_size": CODEBOOK, "trainable": True}
    (tmp_path / "dump" / "codec_info.json").write_text(json.dumps(info))
    return tmp_path


def _config(max_steps: int = 4, d_model: int = 32, **train: object) -> OmegaConf:
    tiny = {"d_model": d_model, "num_heads": 2, "num_layers": 1, "ffn_dim": 64, "dropout": 0.0}
    common = {"max_steps": max_steps, "lr": 3e-3, "warmup_steps": 2, "checkpoint_every": 2, "log_every": 1,
              "max_frames": 120, "progress": False, "average_last": 2, **train}
    return OmegaConf.create({
        "ar_lm": {"name": "valle_ar", **tiny}, "ar_train": common,
        "nar_lm": {"name": "valle_nar", **tiny}, "nar_train": {**common, "max_prompt_seconds": 0.6},
    })


def _run(stage, recipe: Path, config) -> Path:
    return run_stage(stage, config, recipe / "data", recipe / "dump", recipe / "exp")


def _align(recipe: Path) -> None:
    """The alignment step of stage 4 with a tiny aligner: exp/align + dump/{train,dev}/durations."""
    from speechkit.align.model import AlignerConfig
    from speechkit.bin.align import AlignStageConfig
    from speechkit.bin.align import run_stage as run_align

    options = AlignStageConfig(model=AlignerConfig(d_model=16, conv_layers=1, ffn_dim=32, dropout=0.0), steps=3,
                               uniform_steps=1, batch_size=8, sets=["train", "dev"], num_plots=0, threads=1)
    run_align(options, recipe / "data", recipe / "dump", recipe / "exp")


def _aligned_config(**train: object) -> OmegaConf:
    config = _config(**train)
    config.ar_lm.name = "aligned_ar"
    return config


def test_ar_stage_trains_writes_the_gap_and_a_pack_that_generates(recipe):
    pack_dir = _run(train_ar.AR_STAGE, recipe, _config())
    exp_dir = recipe / "exp" / "ar"
    assert pack_dir == exp_dir / "pack"
    assert {"config.yaml", "resume.sh", "train_log.jsonl", "averaged.pt", ".done.ar"} <= {p.name for p in exp_dir.iterdir()}
    gap = json.loads((exp_dir / "text_use_gap.json").read_text())
    assert gap["step"] == 4 and gap["num_pairs"] == 8
    assert gap["gap"] == pytest.approx(gap["loss_wrong"] - gap["loss_right"], abs=1e-4)
    assert set(gap["groups"]) <= {"en/same", "en/cross", "zh/same", "zh/cross"}
    pack = load_pack(pack_dir)
    assert pack.extra["phone_table"] == "tokens.txt" and pack.extra["training"]["step"] == 4
    table = PhoneTable.load(pack_dir / pack.extra["phone_table"])
    assert pack.context["ar_lm"] == {"num_phones": len(table), "codebook_size": CODEBOOK, "num_languages": 3}
    phones = torch.tensor(table.encode(["en:B", "en:K", "zh:a1", "zh:b"]))
    codes = pack["ar_lm"].generate(phones, torch.tensor([1, 1, 2, 2]), torch.tensor([1, 2, 6, 7]), 2,
                                   num_target_phones=2, temperature=0)
    assert codes.dim() == 1 and 0 < len(codes) and int(codes.max()) < CODEBOOK


def test_rerun_of_a_finished_stage_does_nothing(recipe):
    _run(train_ar.AR_STAGE, recipe, _config())
    exp_dir = recipe / "exp" / "ar"
    stamps = {p.name: p.stat().st_mtime_ns for p in exp_dir.rglob("*") if p.is_file()}
    _run(train_ar.AR_STAGE, recipe, _config())
    assert {p.name: p.stat().st_mtime_ns for p in exp_dir.rglob("*") if p.is_file()} == stamps


def test_more_steps_resume_from_the_last_checkpoint(recipe):
    _run(train_ar.AR_STAGE, recipe, _config(max_steps=4))
    exp_dir = recipe / "exp" / "ar"
    first = read_log(exp_dir / "train_log.jsonl")
    _run(train_ar.AR_STAGE, recipe, _config(max_steps=8))
    records = read_log(exp_dir / "train_log.jsonl")
    assert records[: len(first)] == first  # kept as written (timings included): not retrained
    steps = [r["step"] for r in records if r["split"] == "train"]
    assert steps == list(range(1, 9))  # steps 1-4 from the first run, 5-8 continued
    assert [step for step, _ in list_checkpoints(exp_dir)][-1] == 8
    assert json.loads((exp_dir / "text_use_gap.json").read_text())["step"] == 8
    assert load_pack(exp_dir / "pack").extra["training"]["step"] == 8


def test_changing_the_model_with_old_checkpoints_is_an_error(recipe):
    _run(train_ar.AR_STAGE, recipe, _config())
    with pytest.raises(ConfigError, match="Delete"):
        _run(train_ar.AR_STAGE, recipe, _config(d_model=48))


def test_nar_stage_reports_every_level_and_its_pack_generates(recipe):
    pack_dir = _run(train_nar.NAR_STAGE, recipe, _config())
    report = json.loads((recipe / "exp" / "nar" / "level_accuracy.json").read_text())
    assert sorted(report["levels"]) == [str(level) for level in range(2, LEVELS + 1)]
    assert all(0.0 <= m["accuracy"] <= 1.0 and m["loss"] > 0 for m in report["levels"].values())
    pack = load_pack(pack_dir)
    assert pack.context["nar_lm"]["num_quantizers"] == LEVELS and (pack_dir / "tokens.txt").is_file()
    prompt = torch.randint(0, CODEBOOK, (LEVELS, 5))
    codes = pack["nar_lm"].generate(torch.tensor([5, 6]), torch.tensor([1, 1]), prompt, torch.tensor([1, 2, 3]))
    assert codes.shape == (LEVELS, 3) and codes[0].tolist() == [1, 2, 3]


def test_cli_prints_the_sections_and_names_a_missing_one(recipe, capsys):
    config_path = recipe / "conf.yaml"
    config_path.write_text(OmegaConf.to_yaml(_config()))
    assert train_nar.main(["--config", str(config_path), "--print-config"]) == 0
    assert "nar_train:" in capsys.readouterr().out
    config_path.write_text(OmegaConf.to_yaml({"ar_lm": {"name": "valle_ar"}}))
    with pytest.raises(ConfigError, match="ar_train"):
        train_ar.main(["--config", str(config_path), "--data", str(recipe / "data"), "--dump",
                       str(recipe / "dump"), "--exp", str(recipe / "exp")])


@pytest.mark.slow  # ~15 s: two processes start torch; the trainer's DDP itself is tested in tests/train
def test_two_process_torchrun_trains_the_ar_stage(recipe):
    import os
    import subprocess
    import sys

    config_path = recipe / "conf.yaml"
    config_path.write_text(OmegaConf.to_yaml(_config(max_steps=4, max_frames=60)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPEECHKIT_NO_PLUGINS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
         "speechkit.bin.train_ar", "--config", str(config_path), "--data", "data", "--dump", "dump", "--exp", "exp"],
        cwd=recipe, env=env, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    checkpoint = torch.load(list_checkpoints(recipe / "exp" / "ar")[-1][1], weights_only=True)
    assert checkpoint["world_size"] == 2 and checkpoint["step"] == 4
    assert load_pack(recipe / "exp" / "ar" / "pack").extra["training"]["step"] == 4


def test_aligned_ar_stage_trains_on_durations_and_realigns_the_wrong_text(recipe):
    from speechkit.align.durations import read_durations

    _align(recipe)
    durations = read_durations(recipe / "dump" / "dev" / "durations")
    pack_dir = _run(train_ar.AR_STAGE, recipe, _aligned_config())
    gap = json.loads((recipe / "exp" / "ar" / "text_use_gap.json").read_text())
    assert gap["num_pairs"] == 8 and len(durations) == 8
    assert gap["gap"] == pytest.approx(gap["loss_wrong"] - gap["loss_right"], abs=1e-4)
    assert all(0.0 <= value["accuracy_wrong"] <= 1.0 for value in gap["groups"].values())
    pack = load_pack(pack_dir)
    model = pack["ar_lm"]
    assert type(model).__name__ == "AlignedAR" and pack.extra["training"]["step"] == 4
    table = PhoneTable.load(pack_dir / "tokens.txt")
    phones = torch.tensor(table.encode(["en:B", "en:K", "zh:a1", "zh:b"]))
    generation = model.generate_batch(phones.unsqueeze(0), torch.tensor([4]), torch.tensor([[1, 1, 2, 2]]),
                                      torch.tensor([[1, 2, 6, 7]]), torch.tensor([4]), torch.tensor([2]),
                                      num_target_phones=torch.tensor([2]), temperature=0.0)
    assert set(generation.frame_phones[0].tolist()) <= {0, 1}  # the pointer walks the 2 target phones only
    rerun_stamp = (recipe / "exp" / "ar" / ".done.ar").stat().st_mtime_ns
    _run(train_ar.AR_STAGE, recipe, _aligned_config())
    assert (recipe / "exp" / "ar" / ".done.ar").stat().st_mtime_ns == rerun_stamp


def test_aligned_ar_without_durations_names_the_alignment_step(recipe):
    with pytest.raises(DataError, match="speechkit.bin.align"):
        _run(train_ar.AR_STAGE, recipe, _aligned_config())
    assert not (recipe / "exp" / "ar").exists()


def test_aligned_ar_gap_needs_the_aligner_for_the_wrong_text(recipe):
    from speechkit.data.lm_dataset import ARPairDataset, PairingConfig, load_lm_corpus
    from speechkit.registry import build
    from speechkit.train.lm_diagnostics import text_use_gap

    _align(recipe)
    table = PhoneTable.load(recipe / "dump" / "tokens.txt")
    corpus = load_lm_corpus(recipe / "data" / "dev", recipe / "dump" / "dev" / tokens.CODES_SCP, table,
                            durations_path=recipe / "dump" / "dev" / "durations")
    model = build("ar_lm", {"name": "aligned_ar", "d_model": 16, "num_heads": 2, "num_layers": 1, "ffn_dim": 32},
                  num_phones=len(table), codebook_size=CODEBOOK, num_languages=3)
    with pytest.raises(DataError, match="realign"):
        text_use_gap(model, ARPairDataset(corpus, PairingConfig()), max_items=4)


def _save_tiny_codec(recipe: Path) -> None:
    """exp/codec: a mel_rvq fitted on sine sweeps with the fixture's layout (LEVELS x CODEBOOK)."""
    import math

    from speechkit.codec_io import save_codec
    from speechkit.registry import build

    t = torch.arange(8000) / 16000
    wavs = [0.3 * torch.sin(2 * math.pi * (150 + 60 * i) * t * (1 + t)) for i in range(4)]
    codec = build("codec", {"name": "mel_rvq", "num_quantizers": LEVELS, "codebook_size": CODEBOOK,
                            "kmeans_iterations": 2, "vocoder": {"name": "griffin_lim", "iterations": 2}})
    codec.fit(wavs)
    save_codec(codec, recipe / "exp" / "codec")


def test_continuous_nar_stage_copies_the_codec_codewords_into_its_pack(recipe):
    config = _config()
    config.nar_lm = {"name": "continuous_nar", "d_model": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64,
                     "dropout": 0.0}
    with pytest.raises(DataError, match="alignment step"):
        _run(train_nar.NAR_STAGE, recipe, config)
    _align(recipe)
    with pytest.raises(DataError, match="stage 3"):
        _run(train_nar.NAR_STAGE, recipe, config)
    _save_tiny_codec(recipe)
    pack_dir = _run(train_nar.NAR_STAGE, recipe, config)
    model = load_pack(pack_dir)["nar_lm"]
    from speechkit.codec_io import load_codec

    codec = load_codec(recipe / "exp" / "codec")
    codes = torch.randint(0, CODEBOOK, (LEVELS, 6))
    assert torch.allclose(model.features_of(codes.unsqueeze(0))[0], codec.dequantize(codes), atol=1e-5)
    report = json.loads((recipe / "exp" / "nar" / "level_accuracy.json").read_text())
    assert sorted(report["levels"]) == [str(level) for level in range(2, LEVELS + 1)]
    filled = model.generate(torch.tensor([5, 6]), torch.tensor([1, 1]), codes[:, :4], torch.tensor([1, 2, 3]))
    assert filled.shape == (LEVELS, 3) and filled[0].tolist() == [1, 2, 3]


def test_run_name_trains_a_variant_beside_the_recipe_model(recipe):
    config = recipe / "variant.yaml"
    OmegaConf.save(_config(max_steps=2), config)
    args = ["--config", str(config), "--data", str(recipe / "data"), "--dump", str(recipe / "dump"),
            "--exp", str(recipe / "exp"), "--run-name", "ar_variant"]
    assert train_ar.main(args) == 0
    assert (recipe / "exp" / "ar_variant" / "pack").is_dir() and list_checkpoints(recipe / "exp" / "ar_variant")
    assert not (recipe / "exp" / "ar").exists()
