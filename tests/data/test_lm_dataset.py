"""Same-speaker (prompt, target) pairs for the codec LMs: pairing, item layout, collate, caching."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from speechkit.data import tokens
from speechkit.data.datadir import DataDir
from speechkit.data.lm_dataset import (
    ARPairDataset,
    EpochIndexedBatchSampler,
    NARPairDataset,
    PairingConfig,
    collate_ar,
    collate_nar,
    load_lm_corpus,
)
from speechkit.data.sampler import BucketBatchSampler
from speechkit.errors import ConfigError, DataError
from speechkit.text.languages import language_id
from speechkit.text.phone_table import PhoneTable

LEVELS, CODEBOOK = 3, 16
PHONES = {"en": ["en:AH0", "en:B", "en:K", "en:S"], "zh": ["zh:a1", "zh:b", "zh:i4", "zh:sh"]}


def write_set(root: Path, speakers: int = 3, per_lang: int = 4, drop_codes: tuple[str, ...] = ()) -> PhoneTable:
    """data/train (speakers x per_lang utterances in each language) + dump/train/codes.scp."""
    utts = [f"spk{s}-u{i:02d}-{lang}" for s in range(speakers) for i in range(per_lang) for lang in ("en", "zh")]
    generator = torch.Generator().manual_seed(0)
    phones, codes = {}, {}
    for number, utt in enumerate(utts):
        lang = utt.rsplit("-", 1)[1]
        phones[utt] = " ".join(PHONES[lang][(number + j) % 4] for j in range(3 + number % 4))
        codes[utt] = torch.randint(0, CODEBOOK, (LEVELS, 6 + number % 9), generator=generator)
    data = DataDir(root / "data" / "train", {u: f"/nowhere/{u}.wav" for u in utts}, {u: "x" for u in utts},
                   {u: u.split("-")[0] for u in utts}, {u: u.rsplit("-", 1)[1] for u in utts}, {"phones": phones})
    data.save()
    set_dir = root / "dump" / "train"
    kept = [(utt, codes[utt]) for utt in utts if utt not in drop_codes]
    tokens.write_codes_shard(kept, set_dir / "codes.0.ark", set_dir / tokens.CODES_SCP, codebook_size=CODEBOOK)
    return PhoneTable(PHONES["en"] + PHONES["zh"])


@pytest.fixture
def corpus(tmp_path):
    table = write_set(tmp_path)
    return load_lm_corpus(tmp_path / "data" / "train", tmp_path / "dump" / "train" / "codes.scp", table)


def test_prompts_are_other_utterances_of_the_same_speaker_and_deterministic(corpus):
    dataset = ARPairDataset(corpus, PairingConfig(seed=3))
    again = ARPairDataset(corpus, PairingConfig(seed=3))
    for index in range(len(dataset)):
        target, prompt = dataset.utt_pair((1, index))
        assert target != prompt and target.split("-")[0] == prompt.split("-")[0]
        assert again.utt_pair((1, index)) == (target, prompt)
    epoch_pairs = [[dataset.utt_pair((epoch, i)) for i in range(len(dataset))] for epoch in (0, 1)]
    assert epoch_pairs[0] != epoch_pairs[1]  # a new draw each epoch
    assert dataset.utt_pair(2) == dataset.utt_pair((0, 2))  # a plain index is epoch 0


@pytest.mark.parametrize("probability", [0.0, 0.5, 1.0])
def test_cross_lingual_prompt_ratio_follows_the_probability(corpus, probability):
    dataset = NARPairDataset(corpus, PairingConfig(cross_lingual_prompt_prob=probability))
    kinds = Counter(
        target.rsplit("-", 1)[1] != prompt.rsplit("-", 1)[1]
        for epoch in range(20) for target, prompt in (dataset.utt_pair((epoch, i)) for i in range(len(dataset)))
    )
    share = kinds[True] / sum(kinds.values())
    assert share == pytest.approx(probability, abs=0.06)


def test_ar_item_is_prompt_then_target(corpus):
    dataset = ARPairDataset(corpus, PairingConfig())
    item = dataset[(0, 5)]
    target, prompt, _, _ = dataset.pair((0, 5))
    prompt_codes, target_codes = corpus.codes_of(prompt), corpus.codes_of(target)
    assert torch.equal(item["codes"], torch.cat([prompt_codes[0], target_codes[0]]))
    assert item["prompt_len"] == prompt_codes.shape[1]
    assert torch.equal(item["phones"], torch.cat([corpus.phones[prompt], corpus.phones[target]]))
    assert item["prompt_phone_len"] == len(corpus.phones[prompt])
    assert item["code_lang"] == language_id(corpus.langs[target])
    lang_of_phone = item["phone_langs"].tolist()
    assert set(lang_of_phone) <= {language_id("en"), language_id("zh")}


def test_ar_prompt_is_cut_to_whole_steps_from_its_start(corpus):
    dataset = ARPairDataset(corpus, PairingConfig(), frames_per_step=4)
    for index in range(len(dataset)):
        item = dataset[(0, index)]
        _, prompt, _, _ = dataset.pair((0, index))
        full = corpus.codes_of(prompt)[0]
        assert item["prompt_len"] % 4 == 0 and item["prompt_len"] > len(full) - 4
        assert torch.equal(item["codes"][: item["prompt_len"]], full[len(full) - item["prompt_len"]:])


def test_nar_prompt_crop_is_a_window_of_the_prompt(corpus):
    dataset = NARPairDataset(corpus, PairingConfig(max_prompt_frames=7))
    for index in range(len(dataset)):
        item = dataset[(2, index)]
        target, prompt, start, end = dataset.pair((2, index))
        assert item["prompt_codes"].shape == (LEVELS, min(7, corpus.num_frames[prompt]))
        assert torch.equal(item["prompt_codes"], corpus.codes_of(prompt)[:, start:end])
        assert torch.equal(item["codes"], corpus.codes_of(target))
        assert torch.equal(item["phones"], corpus.phones[target])
    assert all(length > 0 for length in dataset.lengths)


def test_collate_pads_with_zeros_and_reports_lengths(corpus):
    ar = ARPairDataset(corpus, PairingConfig())
    items = [ar[(0, i)] for i in range(4)]
    batch = collate_ar(items)
    assert batch["phones"].shape == batch["phone_langs"].shape == (4, max(len(i["phones"]) for i in items))
    assert batch["codes"].shape == (4, max(len(i["codes"]) for i in items))
    assert batch["code_lens"].tolist() == [len(i["codes"]) for i in items]
    assert batch["prompt_lens"].tolist() == [i["prompt_len"] for i in items]
    for row, item in enumerate(items):
        assert not batch["codes"][row, len(item["codes"]):].any() and not batch["phones"][row, len(item["phones"]):].any()
    nar = NARPairDataset(corpus, PairingConfig())
    items = [nar[(0, i)] for i in range(4)]
    batch = collate_nar(items)
    assert batch["prompt_codes"].shape == (4, LEVELS, max(i["prompt_codes"].shape[1] for i in items))
    assert batch["codes"].shape == (4, LEVELS, max(i["codes"].shape[1] for i in items))
    assert set(batch) == {"phones", "phone_lens", "phone_langs", "prompt_codes", "prompt_lens", "codes", "code_lens"}
    assert all(batch[key].dtype == torch.long for key in batch)


def test_lazy_reading_gives_the_same_items_as_the_cache(tmp_path):
    table = write_set(tmp_path)
    paths = (tmp_path / "data" / "train", tmp_path / "dump" / "train" / "codes.scp")
    cached, lazy = load_lm_corpus(*paths, table), load_lm_corpus(*paths, table, cache=False)
    assert cached.num_frames == lazy.num_frames
    assert all(torch.equal(cached.codes_of(i), lazy.codes_of(i)) for i in range(len(cached)))
    assert next(iter(cached.codes.values())).dtype == torch.int16  # compact in memory


def test_utterances_without_codes_are_left_out_and_missing_phones_is_an_error(tmp_path):
    table = write_set(tmp_path, drop_codes=("spk0-u00-en",))
    corpus = load_lm_corpus(tmp_path / "data" / "train", tmp_path / "dump" / "train" / "codes.scp", table)
    assert "spk0-u00-en" not in corpus.utts and len(corpus) == 3 * 8 - 1
    (tmp_path / "data" / "train" / "phones").unlink()
    with pytest.raises(DataError, match="stage 2"):
        load_lm_corpus(tmp_path / "data" / "train", tmp_path / "dump" / "train" / "codes.scp", table)


def test_a_speaker_with_one_utterance_cannot_be_a_target(tmp_path):
    table = write_set(tmp_path, speakers=2, per_lang=1, drop_codes=("spk1-u00-zh",))
    corpus = load_lm_corpus(tmp_path / "data" / "train", tmp_path / "dump" / "train" / "codes.scp", table)
    dataset = ARPairDataset(corpus, PairingConfig())
    assert [dataset.utt_pair(i)[0] for i in range(len(dataset))] == ["spk0-u00-en", "spk0-u00-zh"]
    with pytest.raises(ConfigError):
        PairingConfig(cross_lingual_prompt_prob=1.5).validate()


def test_epoch_indexed_sampler_tags_indices_and_forwards_the_epoch(corpus):
    dataset = ARPairDataset(corpus, PairingConfig())
    sampler = EpochIndexedBatchSampler(BucketBatchSampler(dataset.lengths, max_frames=200, seed=1))
    sampler.set_epoch(3, start_batch=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) - 1 and sampler.num_replicas == 1
    assert all(epoch == 3 for batch in batches for epoch, _ in batch)
    item = dataset[batches[0][0]]
    assert torch.equal(item["codes"], dataset[(3, batches[0][0][1])]["codes"])


def write_even_durations(root: Path, corpus, skip: tuple[str, ...] = ()) -> Path:
    """dump/train/durations spreading each utterance's frames evenly over its phones."""
    from speechkit.align.durations import write_durations

    table = {}
    for utt, phones, frames in zip(corpus.utts, corpus.phones, corpus.num_frames):
        if utt in skip:
            continue
        base, extra = divmod(frames, len(phones))
        table[utt] = [base + (1 if index < extra else 0) for index in range(len(phones))]
    path = root / "dump" / "train" / "durations"
    write_durations(path, table)
    return path


def test_ar_items_carry_durations_of_the_target_after_zeros_for_the_prompt(tmp_path, corpus):
    path = write_even_durations(tmp_path, corpus, skip=(corpus.utts[0],))
    table = PhoneTable(PHONES["en"] + PHONES["zh"])
    timed = load_lm_corpus(tmp_path / "data" / "train", tmp_path / "dump" / "train" / "codes.scp", table,
                           durations_path=path)
    assert corpus.utts[0] not in timed.utts and len(timed) == len(corpus) - 1  # "no durations"
    assert timed.durations is not None and len(timed.durations) == len(timed.utts)
    assert all(sum(d) == frames for d, frames in zip(timed.durations, timed.num_frames))
    dataset = ARPairDataset(timed, PairingConfig(seed=2))
    items = [dataset[(0, index)] for index in range(4)]
    for index, item in enumerate(items):
        target, prompt, _, _ = dataset.pair((0, index))
        durations = item["durations"]
        assert durations.shape == item["phones"].shape
        assert durations[: item["prompt_phone_len"]].tolist() == [0] * item["prompt_phone_len"]
        assert durations[item["prompt_phone_len"]:].tolist() == timed.durations[target]
        assert int(durations.sum()) == item["codes"].shape[0] - item["prompt_len"]
    batch = collate_ar(items)
    assert batch["durations"].shape == batch["phones"].shape
    assert torch.equal(batch["durations"].sum(1), batch["code_lens"] - batch["prompt_lens"])
    assert "durations" not in collate_ar([ARPairDataset(corpus, PairingConfig())[0]])


def test_durations_that_do_not_fit_the_codes_are_an_error(tmp_path, corpus):
    path = write_even_durations(tmp_path, corpus)
    lines = path.read_text().splitlines()
    utt, *counts = lines[0].split()
    lines[0] = " ".join([utt, *counts, "1"])  # one phone too many
    path.write_text("\n".join(lines) + "\n")
    table = PhoneTable(PHONES["en"] + PHONES["zh"])
    with pytest.raises(DataError, match=utt):
        load_lm_corpus(tmp_path / "data" / "train", tmp_path / "dump" / "train" / "codes.scp", table,
                       durations_path=path)
    with pytest.raises(DataError, match="speechkit.bin.align"):
        load_lm_corpus(tmp_path / "data" / "train", tmp_path / "dump" / "train" / "codes.scp", table,
                       durations_path=tmp_path / "missing")
