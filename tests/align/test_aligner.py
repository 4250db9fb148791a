"""The phone aligner learns a synthetic corpus and recovers the planted durations."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from speechkit.align.durations import add_durations, pair_durations, read_durations, write_durations
from speechkit.align.mas import monotonic_alignment_search
from speechkit.align.model import AlignerConfig, PhoneAligner, uniform_frame_phones
from speechkit.align.train import AlignmentItem, CodeEmbeddingFeatures, align_items, train_aligner
from speechkit.errors import ConfigError

NUM_PHONES, FEATURE_DIM = 12, 8


def _synthetic_corpus(count: int, seed: int) -> tuple[list[AlignmentItem], dict[str, list[int]], torch.Tensor]:
    """Items whose 'codes' are the frame features themselves (identity feature function): phone
    ``p`` sounds like a fixed random vector, held for a random 1-5 frames, plus a little noise."""
    generator = torch.Generator().manual_seed(seed)
    sounds = torch.randn(NUM_PHONES, FEATURE_DIM, generator=torch.Generator().manual_seed(123)) * 2.0
    items, truth = [], {}
    for index in range(count):
        length = int(torch.randint(3, 9, (1,), generator=generator))
        steps = torch.randint(1, NUM_PHONES - 2, (length,), generator=generator)
        phones = 2 + torch.cumsum(steps, 0) % (NUM_PHONES - 2)  # no phone twice in a row (ambiguous split)
        durations = torch.randint(1, 6, (length,), generator=generator)
        frames = sounds[phones].repeat_interleave(durations, dim=0)
        frames = frames + 0.1 * torch.randn(frames.shape, generator=generator)
        utt = f"utt{index:03d}"
        items.append(AlignmentItem(utt=utt, phones=phones, phone_langs=torch.ones_like(phones), codes=frames))
        truth[utt] = durations.tolist()
    return items, truth, sounds


def _identity(frames: torch.Tensor) -> torch.Tensor:
    return frames


@pytest.mark.parametrize("objective", ["forward_sum", "viterbi"])
def test_aligner_recovers_planted_durations(objective: str) -> None:
    torch.manual_seed(0)
    items, truth, _ = _synthetic_corpus(64, seed=1)
    config = AlignerConfig(d_model=32, conv_layers=1, kernel_size=3, transformer_layers=0, dropout=0.0, objective=objective)
    model = PhoneAligner(config, num_phones=NUM_PHONES, num_languages=3, feature_dim=FEATURE_DIM)
    report = train_aligner(model, items, _identity, steps=150, lr=1e-2, batch_size=16, uniform_steps=10, log_every=0)
    # the forward-sum loss includes the alignment prior's (irreducible) -log prior along the paths
    assert report.steps == 150 and report.last_loss < (0.45 if objective == "forward_sum" else 0.2) * report.first_loss
    found = align_items(model, items, _identity, batch_size=16)
    exact = sum(found[utt] == truth[utt] for utt in truth)
    assert exact == len(truth), f"{len(truth) - exact} utterances misaligned"
    for utt, counts in found.items():
        assert min(counts) >= 1 and sum(counts) == sum(truth[utt])


def test_learned_sigma_gives_finite_loss_and_valid_paths() -> None:
    items, _, _ = _synthetic_corpus(8, seed=2)
    config = AlignerConfig(d_model=16, conv_layers=1, kernel_size=3, transformer_layers=1, num_heads=2, ffn_dim=32,
                           learn_sigma=True)
    model = PhoneAligner(config, num_phones=NUM_PHONES, num_languages=3, feature_dim=FEATURE_DIM)
    report = train_aligner(model, items, _identity, steps=3, batch_size=4, log_every=0)
    assert torch.isfinite(torch.tensor(report.last_loss))
    found = align_items(model, items, _identity, batch_size=4)
    assert all(sum(found[item.utt]) == item.codes.shape[0] for item in items)


def test_uniform_path_spreads_frames_evenly() -> None:
    path = uniform_frame_phones(torch.tensor([3, 2]), torch.tensor([6, 3]), 6)
    assert path.tolist() == [[0, 0, 1, 1, 2, 2], [0, 0, 1, -1, -1, -1]]


def test_code_embedding_features_are_fixed_per_code() -> None:
    features = CodeEmbeddingFeatures(num_quantizers=2, codebook_size=5, dim=4, seed=0)
    codes = torch.tensor([[1, 1, 3], [0, 0, 2]])
    out = features(codes)
    assert out.shape == (3, 4) and torch.equal(out[0], out[1]) and not torch.equal(out[0], out[2])


def test_durations_file_roundtrip_and_pair_hook(tmp_path) -> None:
    write_durations(tmp_path / "durations", {"b": [2, 1], "a": [1, 1, 3]})
    assert (tmp_path / "durations").read_text() == "a 1 1 3\nb 2 1\n"
    assert read_durations(tmp_path / "durations") == {"a": [1, 1, 3], "b": [2, 1]}
    assert pair_durations(2, [1, 1, 3]).tolist() == [0, 0, 1, 1, 3]
    item = add_durations({"phones": torch.arange(5)}, [1, 1, 3], num_prompt_phones=2)
    assert item["durations"].tolist() == [0, 0, 1, 1, 3]


def test_diagonal_prior_is_a_distribution_over_phones_following_the_diagonal() -> None:
    from speechkit.align.model import diagonal_log_prior

    prior = diagonal_log_prior(torch.tensor([5, 3]), torch.tensor([20, 6]), 5, 20).exp()
    assert torch.allclose(prior[0].sum(0), torch.ones(20), atol=1e-5)
    assert prior[0].argmax(0).tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    assert prior[1, :3, :6].argmax(0).tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(prior[1, 3:], torch.ones(2, 20)) and torch.equal(prior[1, :, 6:], torch.ones(5, 14))


def test_prior_keeps_a_hub_phone_from_taking_every_frame() -> None:
    """Scores where the last phone fits every frame a little better: MAS without the prior gives
    the other phones one frame each; with it the path stays near the diagonal."""
    config = AlignerConfig(d_model=16, conv_layers=1, kernel_size=3, dropout=0.0)
    phone_lens, frame_lens = torch.tensor([6]), torch.tensor([60])
    posteriors = torch.full((1, 6, 60), -2.0)
    posteriors[0, 5] = -1.5  # the hub
    durations = {}
    for prior_weight in (0.0, 1.0):
        aligner = PhoneAligner(dataclasses.replace(config, prior_weight=prior_weight), num_phones=8,
                               num_languages=3, feature_dim=4)
        path = monotonic_alignment_search(aligner.with_prior(posteriors, phone_lens, frame_lens), phone_lens, frame_lens)
        durations[prior_weight] = torch.bincount(path[0], minlength=6).tolist()
    assert durations[0.0] == [1, 1, 1, 1, 1, 55], "without the prior the hub takes every frame it can"
    assert max(durations[1.0]) <= 20 and min(durations[1.0]) >= 4, durations[1.0]


@pytest.mark.parametrize("bad, message", [({"num_heads": 0}, "num_heads must be >= 1"),
                                          ({"dropout": 2.0}, r"dropout must lie in \[0, 1\)"),
                                          ({"conv_layers": -1}, "conv_layers must be >= 1"),
                                          ({"kernel_size": 4}, "odd")])
def test_impossible_aligner_sizes_are_config_errors(bad: dict, message: str) -> None:
    """num_heads 0 was a ZeroDivisionError and dropout 2 a ValueError from torch."""
    with pytest.raises(ConfigError, match=message):
        PhoneAligner(dataclasses.replace(AlignerConfig(), **bad), num_phones=10, num_languages=2, feature_dim=4)


@pytest.mark.parametrize("bad, message", [({"steps": -1}, "align.steps must be >= 1"),
                                          ({"batch_size": 0}, "align.batch_size must be >= 1"),
                                          ({"lr": 0.0}, "align.lr must be > 0")])
def test_impossible_alignment_step_options_are_config_errors(bad: dict, message: str) -> None:
    """steps -1 'trained' nothing and wrote the untrained aligner's durations over the good ones."""
    from omegaconf import OmegaConf

    from speechkit.bin.align import stage_options

    with pytest.raises(ConfigError, match=message):
        stage_options(OmegaConf.create({"align": bad}))
    assert stage_options(OmegaConf.create({})).steps >= 1
