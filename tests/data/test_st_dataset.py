"""st_dataset: feature cache (resume after a kill), translation phones (reused / phonemized),
ASR/ST/MT items and their targets, task weights, lengths, collation."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.data import st_dataset
from speechkit.data.datadir import read_table, write_table
from speechkit.errors import ConfigError, DataError
from speechkit.registry import build
from speechkit.text.languages import LANGUAGES
from speechkit.text.phone_table import PhoneTable

PHONES = ["en:AA", "en:B", "en:K", "en:S", "zh:a1", "zh:b", "zh:i2", "zh:m"]
# pair -> (en text, en phones, zh text, zh phones)
PAIRS = {"p1": ("ab", "en:AA en:B", "八", "zh:b zh:a1"), "p2": ("sk", "en:S en:K", "米", "zh:m zh:i2"),
         "p3": ("ka", "en:K en:AA", "你", None)}  # p3 is read in English only: its zh phones must be made
READINGS = [("spka", "p1", "en"), ("spka", "p1", "zh"), ("spka", "p2", "en"), ("spka", "p2", "zh"),
            ("spka", "p3", "en"), ("spkb", "p1", "en"), ("spkb", "p1", "zh")]


def tone_wav(phones: str, pitch_shift: float) -> np.ndarray:
    """160 ms of a sine per phone, its pitch set by the phone."""
    t = np.arange(2560) / 16000
    return np.concatenate([0.4 * np.sin(2 * math.pi * (300 + 120 * PHONES.index(p) + pitch_shift) * t)
                           for p in phones.split()]).astype(np.float32)


def make_set(root: Path, readings=READINGS) -> Path:
    """A data dir (wav.scp text utt2spk spk2utt utt2lang translation phones) of tone 'speech'."""
    root.mkdir(parents=True)
    tables: dict[str, dict[str, str]] = {n: {} for n in ("wav.scp", "text", "utt2spk", "utt2lang", "translation", "phones")}
    for speaker, pair, lang in readings:
        en_text, en_phones, zh_text, zh_phones = PAIRS[pair]
        utt = f"{speaker}-{pair}-{lang}"
        phones = en_phones if lang == "en" else zh_phones
        path = root / f"{utt}.wav"
        sf.write(path, tone_wav(phones, 20.0 if speaker == "spkb" else 0.0), 16000)
        tables["wav.scp"][utt], tables["utt2spk"][utt], tables["utt2lang"][utt] = str(path), speaker, lang
        tables["text"][utt], tables["translation"][utt] = (en_text, zh_text) if lang == "en" else (zh_text, en_text)
        tables["phones"][utt] = phones
    for name, table in tables.items():
        write_table(root / name, table)
    spk2utt: dict[str, list[str]] = {}
    for utt, speaker in tables["utt2spk"].items():
        spk2utt.setdefault(speaker, []).append(utt)
    write_table(root / "spk2utt", {speaker: " ".join(sorted(utts)) for speaker, utts in spk2utt.items()})
    return root


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("st_frontend", {"name": "transformer_st", "d_model": 32, "num_heads": 2, "ffn_dim": 64,
                                 "encoder_layers": 1, "decoder_layers": 1, "conv_channels": 8, "num_mels": 40},
                 num_languages=len(LANGUAGES), token_list=PhoneTable(PHONES).tokens)


@pytest.fixture
def corpus(tmp_path: Path, model: torch.nn.Module) -> st_dataset.STCorpus:
    data = make_set(tmp_path / "data" / "train")
    dump = tmp_path / "dump" / "train"
    key = st_dataset.feature_key(model.featurize)
    scp = st_dataset.dump_features(data, dump, model.featurize, key, shard_size=3)
    translations = st_dataset.translation_phones(data, dump, {"en": "zh", "zh": "en"},
                                                 lambda: build("frontend", {"name": "pypinyin"}), "pypinyin")
    return st_dataset.load_st_corpus(data, scp, PhoneTable(PHONES), translations, {"en": "zh", "zh": "en"})


def test_features_are_cached_and_a_killed_shard_is_redone(tmp_path: Path, model: torch.nn.Module,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_set(tmp_path / "data")
    dump = tmp_path / "dump"
    key = st_dataset.feature_key(model.featurize)
    scp = st_dataset.dump_features(data, dump, model.featurize, key, shard_size=3)
    fbank = dump / st_dataset.FBANK_DIR
    assert sorted(p.name for p in fbank.glob("feats.*.ark")) == ["feats.0.ark", "feats.1.ark", "feats.2.ark"]
    frames = read_table(fbank / "utt2num_frames")
    assert sorted(frames) == sorted(read_table(data / "wav.scp"))
    import kaldiio

    stored = kaldiio.load_scp(str(scp))["spka-p1-en"]
    wav, rate = sf.read(data / "spka-p1-en.wav", dtype="float32")
    expected = model.featurize(torch.from_numpy(wav), rate)
    assert stored.dtype == np.float16 and stored.shape == tuple(expected.shape) == (int(frames["spka-p1-en"]), 40)
    assert np.allclose(stored, expected.numpy(), atol=1e-2)

    # a run killed while writing shard 1: its marker is gone; shards 0 and 2 are not recomputed
    (fbank / ".done.feats").unlink()
    (fbank / ".done.feats.1").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in fbank.glob("feats.*.ark")}
    calls = []

    def counting(wav: torch.Tensor, rate: int) -> torch.Tensor:
        calls.append(1)
        return model.featurize(wav, rate)

    assert st_dataset.dump_features(data, dump, counting, key, shard_size=3) == scp
    assert len(calls) == 3  # exactly shard 1's utterances
    after = {p.name: p.stat().st_mtime_ns for p in fbank.glob("feats.*.ark")}
    assert after["feats.0.ark"] == before["feats.0.ark"] and after["feats.1.ark"] != before["feats.1.ark"]
    calls.clear()
    st_dataset.dump_features(data, dump, counting, key, shard_size=3)  # done: a no-op
    assert calls == []


def test_translation_phones_reuse_spoken_text_and_phonemize_the_rest(corpus: st_dataset.STCorpus,
                                                                       tmp_path: Path) -> None:
    cached = read_table(tmp_path / "dump" / "train" / st_dataset.TRANSLATION_PHONES)
    assert cached["spka-p1-en"] == "zh:b zh:a1" and cached["spkb-p1-zh"] == "en:AA en:B"
    assert cached["spka-p3-en"] == "zh:n zh:i3"  # nobody speaks "你": the pypinyin frontend phonemized it
    # a re-run reads the cache (the frontend factory must not be called)
    again = st_dataset.translation_phones(tmp_path / "data" / "train", tmp_path / "dump" / "train",
                                          {"en": "zh", "zh": "en"}, lambda: pytest.fail("rebuilt"), "pypinyin")
    assert again == cached


def test_items_targets_and_lengths(corpus: st_dataset.STCorpus) -> None:
    table = PhoneTable(PHONES)
    dataset = st_dataset.STDataset(corpus, {"asr": 1, "st": 1, "mt": 1})
    # MT items are distinct text pairs: p1 en->zh, p1 zh->en, p2 en->zh, p2 zh->en, p3 en->zh
    assert dataset.task_counts() == {"asr": 7, "st": 7, "mt": 5}
    by_key = {(dataset[i]["task"], dataset[i]["utt"]): (i, dataset[i]) for i in range(len(dataset))}
    _, asr = by_key[("asr", "spkb-p1-zh")]
    assert table.decode(asr["source"].tolist()) == table.decode(asr["target"].tolist()) == ["zh:b", "zh:a1"]
    assert asr["target_lang"] == LANGUAGES["zh"] and asr["features"].shape[1] == 40
    index, st = by_key[("st", "spkb-p1-zh")]
    assert table.decode(st["source"].tolist()) == ["zh:b", "zh:a1"]
    assert table.decode(st["target"].tolist()) == ["en:AA", "en:B"] and st["target_lang"] == LANGUAGES["en"]
    assert dataset.lengths[index] == st["features"].shape[0] == corpus.num_frames[corpus.utts.index("spkb-p1-zh")]
    mt = [(i, item) for (task, _), (i, item) in by_key.items() if task == "mt"]
    assert all(item["features"] is None for _, item in mt)
    assert all(dataset.lengths[i] == 4 * len(item["source"]) for i, item in mt)
    assert table.decode(by_key[("st", "spka-p3-en")][1]["target"].tolist()) == ["<unk>", "<unk>"]


def test_task_weights(corpus: st_dataset.STCorpus) -> None:
    counts = st_dataset.STDataset(corpus, {"asr": 2, "st": 0.5, "mt": 0}, seed=3).task_counts()
    assert counts == {"asr": 14, "st": 4, "mt": 0}  # round(0.5 * 7) = 4 ST items
    with pytest.raises(ConfigError, match="unknown task"):
        st_dataset.STDataset(corpus, {"tts": 1})
    with pytest.raises(ConfigError, match=">= 0"):
        st_dataset.STDataset(corpus, {"asr": 0})


def test_collate_mixes_speech_and_text(corpus: st_dataset.STCorpus, model: torch.nn.Module) -> None:
    dataset = st_dataset.STDataset(corpus, {"asr": 1, "st": 1, "mt": 1})
    picks = [0, len(dataset) // 2, len(dataset) - 1]  # asr, st, mt
    items = [dataset[i] for i in picks]
    assert [item["task"] for item in items] == ["asr", "st", "mt"]
    batch = st_dataset.collate_st(items)
    assert batch["feature_lens"].tolist() == [items[0]["features"].shape[0], items[1]["features"].shape[0], 0]
    assert batch["features"].shape == (3, int(batch["feature_lens"].max()), 40)
    assert batch["source_lens"].tolist() == [len(item["source"]) for item in items]
    assert batch["target_langs"].tolist() == [item["target_lang"] for item in items]
    outputs = model(batch)  # the model accepts the mixed batch
    assert torch.isfinite(outputs["loss"]) and float(outputs["ctc_loss"]) > 0
    text_only = st_dataset.collate_st([items[2]])
    assert "features" not in text_only and torch.isfinite(model(text_only)["loss"])


def test_missing_inputs_are_named(tmp_path: Path, model: torch.nn.Module) -> None:
    data = make_set(tmp_path / "data")
    (data / "translation").unlink()
    with pytest.raises(DataError, match="translation does not exist"):
        st_dataset.translation_phones(data, tmp_path / "dump", {"en": "zh", "zh": "en"}, lambda: None, "x")
    with pytest.raises(DataError, match="does not map"):
        make_set(tmp_path / "other")
        st_dataset.translation_phones(tmp_path / "other", tmp_path / "dump2", {"en": "zh"}, lambda: None, "x")
