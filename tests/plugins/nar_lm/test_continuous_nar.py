"""continuous_nar: codewords from a codec, feature regression, re-quantisation, the NAR contract."""
from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError, DataError
from speechkit.registry import build
from speechkit.testing import check_nar_lm

CONTEXT = {"num_phones": 20, "codebook_size": 16, "num_quantizers": 4, "num_languages": 3}
TINY = {"d_model": 32, "num_heads": 2, "num_layers": 2, "ffn_dim": 64, "dropout": 0.0, "feature_dim": 6}


def codewords(seed: int = 0) -> torch.Tensor:
    """FloatTensor[L=4, K=16, F=6], level l scaled by 0.3^(l-1) like a residual VQ's."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.tensor([0.3**level for level in range(4)]).view(4, 1, 1)
    return torch.randn(4, 16, 6, generator=generator) * scales


class AdditiveCodec:
    """Stand-in residual-VQ codec: ``dequantize`` sums one codeword per level."""

    def __init__(self, table: torch.Tensor, sizes: list[int] | None = None, additive: bool = True) -> None:
        self.table, self.additive = table, additive
        if sizes is not None:
            self.codebook_sizes = sizes

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        total = sum(self.table[level][ids] for level, ids in enumerate(codes))
        return total if self.additive else torch.tanh(total)


def tiny_nar(**options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build("nar_lm", {"name": "continuous_nar", **TINY, **options}, **CONTEXT)
    model.attach_codec(AdditiveCodec(codewords()))
    return model.eval()



def test_contract() -> None:
    check_nar_lm(tiny_nar(), **CONTEXT)


def test_attach_codec_recovers_the_codewords(nar_batch) -> None:
    model = tiny_nar()
    assert torch.allclose(model.codewords, codewords(), atol=1e-6)
    codes = nar_batch()["codes"]
    expected = AdditiveCodec(codewords()).dequantize(codes[0])
    assert torch.allclose(model.features_of(codes)[0], expected, atol=1e-6)


def test_requantize_inverts_exact_features(nar_batch) -> None:
    model, codes = tiny_nar(), nar_batch()["codes"]
    assert torch.equal(model.requantize(model.features_of(codes), codes[:, 0]), codes)


def test_levels_of_different_sizes_never_produce_missing_codes() -> None:
    model = build("nar_lm", {"name": "continuous_nar", **TINY}, **CONTEXT)
    model.attach_codec(AdditiveCodec(codewords(), sizes=[16, 5, 5, 5]))
    features = torch.randn(2, 9, 6)
    codes = model.requantize(features, torch.randint(0, 16, (2, 9)))
    assert int(codes[:, 1:].max()) < 5
    assert torch.equal(model.codewords[1:, 5:], torch.zeros(3, 11, 6))


def test_non_additive_codec_or_no_codec_is_a_clear_error(nar_batch) -> None:
    model = build("nar_lm", {"name": "continuous_nar", **TINY}, **CONTEXT)
    with pytest.raises(ConfigError, match="no codewords yet"):
        model(nar_batch())
    with pytest.raises(ConfigError, match="not a sum of one codeword"):
        model.attach_codec(AdditiveCodec(codewords(), additive=False))
    with pytest.raises(ConfigError, match="feature_dim"):
        model.set_codewords(torch.zeros(4, 16, 80))
    with pytest.raises(ConfigError, match="dequantize"):
        model.attach_codec(object())


def test_fresh_model_predicts_the_level1_codeword_and_learns_the_residual(nar_batch) -> None:
    model, batch = tiny_nar(), nar_batch()
    features = model.generate_features_batch(*(batch[k] for k in ("phones", "phone_lens", "phone_langs", "prompt_codes",
                                                                     "prompt_lens")), batch["codes"][:, 0], batch["code_lens"])
    assert torch.allclose(features[0], model.codewords[0][batch["codes"][0, 0]]), "zero-initialised head"
    assert torch.equal(features[1, 4:], torch.zeros(3, 6)), "padding frames are zero"
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(model(batch)["loss"].detach())
    for _ in range(60):
        optimizer.zero_grad()
        model(batch)["loss"].backward()
        optimizer.step()
    out = model({**batch, "level": 2})
    assert float(out["loss"].detach()) < 0.5 * first
    assert float(out["accuracy"]) > 0.5, "the fitted residual re-quantises to the true level-2 codes"


def test_loss_does_not_depend_on_the_level_but_accuracy_is_per_level(nar_batch) -> None:
    model, batch = tiny_nar(), nar_batch()
    level2, level4 = model({**batch, "level": 2}), model({**batch, "level": 4})
    assert torch.equal(level2["loss"], level4["loss"])
    assert level2["logits"].shape == (2, 7, 16) and not torch.equal(level2["logits"], level4["logits"])
    with pytest.raises(DataError, match="level"):
        model({**batch, "level": 1})


def test_codewords_are_saved_with_the_weights(tmp_path) -> None:
    model = tiny_nar()
    torch.save(model.state_dict(), tmp_path / "nar.pt")
    fresh = build("nar_lm", {"name": "continuous_nar", **TINY}, **CONTEXT)
    fresh.load_state_dict(torch.load(tmp_path / "nar.pt", weights_only=True))
    assert torch.equal(fresh.codewords, model.codewords) and bool(fresh.codec_attached)



def test_frame_phones_condition_each_frame_and_default_to_an_even_spread(nar_batch) -> None:
    model, batch = tiny_nar(), nar_batch()
    with torch.no_grad():
        model.head.weight.normal_(std=0.1)  # a non-zero head, so the hidden states show
    args = [batch[k] for k in ("phones", "phone_lens", "phone_langs", "prompt_codes", "prompt_lens")]
    level1, code_lens = batch["codes"][:, 0], batch["code_lens"]
    spread = torch.tensor([[0, 0, 1, 2, 2, 3, 4], [0, 0, 1, 2, 0, 0, 0]])  # 5 phones / 7 frames, 3 / 4
    default = model.generate_features_batch(*args, level1, code_lens)
    assert torch.allclose(default, model.generate_features_batch(*args, level1, code_lens, spread))
    other = torch.tensor([[4, 4, 4, 3, 2, 1, 0], [2, 2, 2, 2, 0, 0, 0]])
    moved = model.generate_features_batch(*args, level1, code_lens, other)
    assert not torch.allclose(moved[0], default[0]) and not torch.allclose(moved[1, :4], default[1, :4])
    trained = model({**batch, "frame_phones": other})
    assert torch.isfinite(trained["loss"])
    with pytest.raises(DataError, match="index each item's phones"):
        model.generate_features_batch(*args, level1, code_lens, torch.tensor([[0] * 7, [3, 0, 0, 0, 0, 0, 0]]))
    with pytest.raises(DataError, match="frame_phones must be"):
        model.generate_features_batch(*args, level1, code_lens, other[:, :5])


def test_level1_noise_draws_near_codewords_and_only_in_training(nar_batch) -> None:
    model = tiny_nar(level1_noise=0.5, level1_noise_neighbours=3)
    level1 = torch.randint(0, 16, (4, 200), generator=torch.Generator().manual_seed(1))
    noisy = model.corrupt_level1(level1, torch.Generator().manual_seed(2))
    changed = noisy != level1
    assert 0.4 < changed.float().mean() < 0.6
    table = model.codewords[0]
    distances = torch.cdist(table, table).fill_diagonal_(float("inf"))
    nearest = distances.topk(3, dim=1, largest=False).indices  # [K, 3]
    assert bool((nearest[level1[changed]] == noisy[changed].unsqueeze(1)).any(dim=1).all())
    uniform = tiny_nar(level1_noise=1.0, level1_noise_neighbours=0).corrupt_level1(level1)
    assert len(set(uniform[level1 == 0].tolist())) > 3  # not limited to neighbours
    batch = nar_batch()
    batch["level"] = torch.tensor(2)
    with torch.no_grad():
        first, second = model(batch)["loss"], model(batch)["loss"]
    assert torch.equal(first, second)  # eval mode: no noise, deterministic
    assert torch.equal(tiny_nar().corrupt_level1(level1), level1)  # off by default
    with pytest.raises(ConfigError, match="level1_noise"):
        tiny_nar(level1_noise=1.5)
