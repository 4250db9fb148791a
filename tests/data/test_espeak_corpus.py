"""The embedded espeak-ng corpus: speaker design, sentence splits, synthesis, resumability, CLI."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from speechkit.audio.io import audio_info
from speechkit.config import validate_options
from speechkit.data import espeak, espeak_corpus
from speechkit.data.datadir import DataDir, read_table
from speechkit.data.espeak_corpus import CorpusConfig, build_corpus
from speechkit.data.sentence_pairs import SentencePair, assign_pairs, load_sentence_pairs, split_pairs
from speechkit.data.speakers import design_speakers, read_speakers_tsv
from speechkit.errors import AudioError, ConfigError, MissingDependencyError

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "vallex_zh_en"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

#: 4 speakers (2/1/1), 2 pairs each -> 16 utterances, well under a second to build.
TINY = dict(
    num_train_speakers=2, num_dev_speakers=1, num_test_speakers=1,
    train_pairs_per_speaker=2, eval_pairs_per_speaker=2, dev_pairs=2, test_pairs=2, nj=1,
)


def tiny_config(**changes: object) -> CorpusConfig:
    return dataclasses.replace(CorpusConfig(**TINY), **changes)


def file_mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


# --- speaker design -------------------------------------------------------------------------

def test_speakers_are_deterministic_split_and_gender_balanced() -> None:
    config = CorpusConfig()
    kwargs = dict(
        num_speakers=config.num_speakers, female_variants=config.female_variants,
        male_variants=config.male_variants, pitch_range=(30, 70), speed_range=(135, 185), seed=3,
    )
    speakers = design_speakers(**kwargs)
    assert speakers == design_speakers(**kwargs)
    assert speakers != design_speakers(**{**kwargs, "seed": 4})
    assert [s.speaker_id for s in speakers] == [f"spk{i:02d}" for i in range(1, 33)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", s.speaker_id) for s in speakers)
    by_split = {split: [s for s in speakers if s.split == split] for split in ("train", "dev", "test")}
    assert {split: len(group) for split, group in by_split.items()} == {"train": 24, "dev": 4, "test": 4}
    for group in by_split.values():
        assert {s.gender for s in group} == {"f", "m"}
    held_out_variants = {s.variant for s in by_split["dev"] + by_split["test"]}
    assert not held_out_variants & {s.variant for s in by_split["train"]}
    assert len({(s.variant, s.pitch, s.speed) for s in speakers}) == 32
    assert all(30 <= s.pitch <= 70 and 135 <= s.speed <= 185 for s in speakers)


def test_more_speakers_than_variants_reuse_variants_with_other_pitches() -> None:
    speakers = design_speakers(
        num_speakers={"train": 5, "dev": 1, "test": 0}, female_variants=["f1"], male_variants=["m1"],
        pitch_range=(20, 80), speed_range=(150, 150), seed=0,
    )
    assert len({(s.variant, s.pitch) for s in speakers}) == 6


def test_speaker_design_rejects_bad_counts() -> None:
    with pytest.raises(ConfigError, match="at least one training speaker"):
        design_speakers(num_speakers={"train": 0}, female_variants=["f1"], male_variants=[],
                        pitch_range=(40, 60), speed_range=(150, 160), seed=0)
    with pytest.raises(ConfigError, match="Unknown split"):
        design_speakers(num_speakers={"train": 1, "eval": 1}, female_variants=["f1"], male_variants=[],
                        pitch_range=(40, 60), speed_range=(150, 160), seed=0)


# --- sentence pairs -------------------------------------------------------------------------

def test_hsk_pairs_load_with_stable_ids() -> None:
    pairs = load_sentence_pairs()
    assert len(pairs) == 4354
    assert pairs[0] == SentencePair("hsk00000", "hsk1-0001", "老师，您好！", "Hello, teacher!")
    assert len({p.pair_id for p in pairs}) == len(pairs)


def test_split_holds_out_only_unique_sentences() -> None:
    pairs = [SentencePair(f"p{i}", str(i), f"中{i}", f"en {i}") for i in range(20)]
    pairs.append(SentencePair("dupA", "a", "重复", "same"))
    pairs.append(SentencePair("dupB", "b", "不同", "same"))  # shares its English with dupA
    pools = split_pairs(pairs, dev_pairs=5, test_pairs=5, seed=1)
    assert pools == split_pairs(pairs, dev_pairs=5, test_pairs=5, seed=1)
    ids = {split: {p.pair_id for p in pool} for split, pool in pools.items()}
    assert len(ids["dev"]) == len(ids["test"]) == 5 and len(ids["train"]) == 12
    assert not ids["train"] & ids["dev"] and not ids["train"] & ids["test"] and not ids["dev"] & ids["test"]
    assert {"dupA", "dupB"} <= ids["train"]
    with pytest.raises(ConfigError, match="exceeds the 20 sentence pairs that can be held out"):
        split_pairs(pairs, dev_pairs=11, test_pairs=10, seed=1)


def test_assign_pairs_round_robin_distinct() -> None:
    pool = [SentencePair(f"p{i}", str(i), "中", "en") for i in range(5)]
    assignment = assign_pairs(pool, ["s1", "s2", "s3"], 3)
    assert [p.pair_id for p in assignment["s1"]] == ["p0", "p1", "p2"]
    assert [p.pair_id for p in assignment["s2"]] == ["p3", "p4", "p0"]
    with pytest.raises(ConfigError, match="the pool has only 5 pairs"):
        assign_pairs(pool, ["s1"], 6)


# --- config and espeak wrapper --------------------------------------------------------------

def test_config_typo_and_bad_values_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"'num_train_speaker' \(did you mean 'num_train_speakers'\?\)"):
        validate_options(CorpusConfig, {"num_train_speaker": 3}, where="corpus")
    with pytest.raises(ConfigError, match="pitch_range must lie in"):
        validate_options(CorpusConfig, {"pitch_range": [10, 120]}, where="corpus")
    with pytest.raises(ConfigError, match="nj must be >= 1"):
        validate_options(CorpusConfig, {"nj": 0}, where="corpus")
    assert validate_options(CorpusConfig, {"seed": 7}, where="corpus").seed == 7


def test_trim_silence_keeps_speech_and_margin() -> None:
    rate = 16000
    tone = 0.5 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)
    wav = np.concatenate([np.zeros(rate), tone, np.zeros(rate)]).astype(np.float32)
    trimmed = espeak.trim_silence(wav, rate, threshold_db=40, margin_s=0.05)
    assert abs(len(trimmed) - int(1.1 * rate)) <= 2 * int(0.01 * rate)
    assert np.max(np.abs(trimmed)) == pytest.approx(0.5, abs=1e-3)


def test_missing_espeak_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(espeak.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"apt-get install espeak-ng.*tools/install.sh"):
        espeak.check_espeak(["en-us"], [])


@needs_espeak
def test_missing_mandarin_voice_and_unknown_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"Unknown espeak-ng voice variant\(s\) \['nope'\]"):
        espeak.check_espeak(["en-us"], ["f3", "nope"])
    monkeypatch.setattr(espeak, "available_language_voices", lambda: frozenset({"en-us"}))
    with pytest.raises(MissingDependencyError, match=r"cmn-latn-pinyin.*apt-get install espeak-ng"):
        espeak.check_espeak(["en-us", "cmn-latn-pinyin"], ["f3"])


@needs_espeak
def test_synthesize_both_languages() -> None:
    for language_voice, text in (("en-us", "Hello, teacher!"), ("cmn-latn-pinyin", "老师，您好！")):
        wav, rate = espeak.synthesize(text, espeak.EspeakVoice(language_voice, "f3", pitch=60, speed=160))
        assert rate == 22050 and wav.dtype == np.float32
        assert 0.5 < len(wav) / rate < 4.0 and np.max(np.abs(wav)) > 0.05


# --- building the corpus --------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("corpus")
    return out, build_corpus(tiny_config(), out)


def test_tiny_corpus_is_valid_and_split_by_speaker_and_sentence(tiny_corpus: tuple[Path, dict]) -> None:
    out, stats = tiny_corpus
    sets = {split: DataDir.load(out / split) for split in ("train", "dev", "test")}  # validates
    speakers = {split: set(d.utt2spk.values()) for split, d in sets.items()}
    assert {split: len(s) for split, s in speakers.items()} == {"train": 2, "dev": 1, "test": 1}
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]
    pairs = {split: set(d.extra["utt2pair"].values()) for split, d in sets.items()}
    texts = {split: set(d.text.values()) for split, d in sets.items()}
    for held_out in ("dev", "test"):
        assert not pairs[held_out] & pairs["train"] and not texts[held_out] & texts["train"]
    for data in sets.values():
        for speaker, utts in data.spk2utt.items():
            languages_per_pair: dict[str, set[str]] = {}
            for utt in utts:
                languages_per_pair.setdefault(data.extra["utt2pair"][utt], set()).add(data.utt2lang[utt])
            assert all(langs == {"en", "zh"} for langs in languages_per_pair.values()), speaker
        for utt in data.utts:
            assert re.fullmatch(r"spk\d+-hsk\d{5}-(en|zh)", utt)
            other = utt[:-2] + ("zh" if utt.endswith("en") else "en")
            assert data.extra["translation"][utt] == data.text[other]
            info = audio_info(data.wav_scp[utt])
            assert (info.sample_rate, info.channels) == (16000, 1)
            assert float(data.extra["utt2dur"][utt]) == pytest.approx(info.seconds, abs=1e-3)
    assert stats["total"]["all"]["utterances"] == 16 and stats["failed_utterances"] == 0
    assert stats["sets"]["test"]["zh"] == {**stats["sets"]["test"]["zh"], "utterances": 2, "speakers": 1}
    assert json.loads((out / "local" / "corpus_stats.json").read_text()) == stats
    assert [s.split for s in read_speakers_tsv(out / "local" / "speakers.tsv")] == ["train", "train", "dev", "test"]


@needs_espeak
def test_corpus_is_deterministic(tiny_corpus: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = tiny_corpus
    build_corpus(tiny_config(nj=2), tmp_path)  # other worker count, same corpus
    for name in ("text", "utt2spk", "utt2pair", "utt2dur"):
        assert read_table(tmp_path / "train" / name) == read_table(out / "train" / name)
    utt = next(iter(read_table(out / "test" / "wav.scp")))
    first = (out / "local" / "wav" / utt.split("-")[0] / f"{utt}.wav").read_bytes()
    assert (tmp_path / "local" / "wav" / utt.split("-")[0] / f"{utt}.wav").read_bytes() == first


@needs_espeak
def test_rerun_is_a_no_op_and_resume_finishes(tmp_path: Path) -> None:
    config = tiny_config()
    first = build_corpus(config, tmp_path)
    before = file_mtimes(tmp_path)
    assert build_corpus(config, tmp_path) == first
    assert file_mtimes(tmp_path) == before

    # simulate a killed run: a wav and the done-marker are gone, a temp file is left behind
    wav = sorted((tmp_path / "local" / "wav" / "spk01").glob("*.wav"))[0]
    wav.unlink()
    (tmp_path / "local" / ".done.corpus").unlink()
    (wav.parent / f".{wav.name}.abc.tmp").write_bytes(b"partial")
    resumed = build_corpus(config, tmp_path)
    assert resumed["synthesised_this_run"] == 1
    assert wav.is_file() and not list(wav.parent.glob(".*.tmp"))
    after = file_mtimes(tmp_path)
    untouched = [p for p in before if p.endswith(".wav") and p != str(wav.relative_to(tmp_path))]
    assert all(after[p] == before[p] for p in untouched)
    assert resumed["total"] == first["total"]


@needs_espeak
def test_changed_voice_settings_resynthesise(tmp_path: Path) -> None:
    build_corpus(tiny_config(), tmp_path)
    stats = build_corpus(tiny_config(trim_db=30.0), tmp_path)
    assert stats["synthesised_this_run"] == stats["total"]["all"]["utterances"] == 16
    smaller = build_corpus(tiny_config(num_train_speakers=1), tmp_path)
    assert smaller["total"]["all"]["speakers"] == 3
    assert sorted(p.name for p in (tmp_path / "local" / "wav").iterdir()) == ["spk01", "spk02", "spk03"]


@needs_espeak
def test_failed_utterances_are_recorded_and_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_synthesize = espeak_corpus.synthesize

    def flaky(text: str, voice: espeak.EspeakVoice) -> tuple[np.ndarray, int]:
        if voice.language_voice == "cmn-latn-pinyin" and voice.variant == "f1":
            raise AudioError(f"espeak-ng failed on {text!r}")
        return real_synthesize(text, voice)

    monkeypatch.setattr(espeak_corpus, "synthesize", flaky)
    stats = build_corpus(tiny_config(female_variants=["f1"], male_variants=["m1"]), tmp_path)
    failed = (tmp_path / "local" / "failed_utterances.tsv").read_text().splitlines()
    assert stats["failed_utterances"] == len(failed) > 0
    assert all(line.split("\t")[0].endswith("-zh") and "espeak-ng failed" in line for line in failed)
    utts = set().union(*(read_table(tmp_path / s / "wav.scp") for s in ("train", "dev", "test")))
    assert not {line.split("\t")[0] for line in failed} & utts


# --- command line and recipe glue -----------------------------------------------------------

def _write_config(tmp_path: Path) -> Path:
    config = tmp_path / "conf.yaml"
    lines = ["corpus:"] + [f"  {key}: {value}" for key, value in TINY.items()]
    config.write_text("\n".join(lines) + "\n")
    return config


@needs_espeak
def test_cli_builds_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from speechkit.bin import make_corpus

    config = _write_config(tmp_path)
    assert make_corpus.main(["--config", str(config), "--out", str(tmp_path / "data"), "--nj", "2"]) == 0
    assert (tmp_path / "data" / "local" / ".done.corpus").is_file()
    assert make_corpus.main(["--config", str(config), "--print-config", "--override", "corpus.seed=9"]) == 0
    assert "seed: 9" in capsys.readouterr().out
    code = make_corpus.run_main(make_corpus.main, ["--config", str(config), "--override", "corpus.sed=1"])
    assert code == 2


def test_recipe_configs_validate() -> None:
    from omegaconf import OmegaConf

    from speechkit.config import load_config

    corpus = validate_options(CorpusConfig, load_config(RECIPE / "conf" / "corpus.yaml").corpus)
    assert corpus.num_speakers == {"train": 24, "dev": 4, "test": 4}
    mini_file = OmegaConf.load(RECIPE / "conf" / "mini.yaml")  # its corpus overrides, without the includes
    assert list(mini_file.include) == ["default.yaml"]
    mini_options = OmegaConf.merge(load_config(RECIPE / "conf" / "corpus.yaml").corpus, mini_file.corpus)
    mini = validate_options(CorpusConfig, mini_options)
    assert sum(mini.num_speakers.values()) == 8


def test_data_sh_refuses_real_corpus_paths(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe"
    (recipe / "local").mkdir(parents=True)
    shutil.copy(RECIPE / "local" / "data.sh", recipe / "local" / "data.sh")
    db = (RECIPE / "db.sh").read_text().replace("AISHELL3=\n", "AISHELL3=/corpora/aishell3\n")
    (recipe / "db.sh").write_text(db)
    result = subprocess.run(["bash", str(recipe / "local" / "data.sh")], capture_output=True, text=True,
                            env={**os.environ, "PATH": os.environ.get("PATH", "")})
    assert result.returncode == 1
    assert "AISHELL3=/corpora/aishell3, but preparing AISHELL3 is not implemented yet" in result.stderr
