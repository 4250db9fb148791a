"""valle_nar: level conditioning, tied weights, random levels, greedy generation."""
from __future__ import annotations

import math

import pytest
import torch

from speechkit.errors import ConfigError, DataError
from speechkit.registry import build
from speechkit.testing import check_nar_lm

CONTEXT = {"num_phones": 20, "codebook_size": 16, "num_quantizers": 4, "num_languages": 3}
TINY = {"d_model": 32, "num_heads": 2, "num_layers": 2, "ffn_dim": 64, "dropout": 0.0}


def tiny_nar(**options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build("nar_lm", {"name": "valle_nar", **TINY, **options}, **CONTEXT).eval()



def test_contract() -> None:
    check_nar_lm(tiny_nar(), **CONTEXT)


def test_level_conditioning_matters(nar_batch) -> None:
    model, batch = tiny_nar(), nar_batch()
    level3 = model({**batch, "level": 3})["logits"]
    level2 = model({**batch, "level": 2})["logits"]
    with torch.no_grad():  # change only the norms of level 3 (condition index 1)
        for module in model.modules():
            if hasattr(module, "gain") and isinstance(module.gain, torch.nn.Embedding):
                module.gain.weight[1] += 0.5
    assert not torch.allclose(model({**batch, "level": 3})["logits"], level3), "level 3 must use its own norms"
    assert torch.equal(model({**batch, "level": 2})["logits"], level2), "level 2 must not use level 3's norms"


def test_output_projection_is_tied_to_next_level_embedding() -> None:
    model = tiny_nar()
    for level in (2, 3):
        assert model.head(level).weight is model.embedding(level + 1).weight
    assert model.head(4).weight is not model.embedding(4).weight
    untied = tiny_nar(tie_weights=False)
    saved = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters())
    assert saved == 2 * 16 * 32, "two [K, D] matrices are shared"


def test_random_level_follows_the_torch_seed(nar_batch) -> None:
    model, batch = tiny_nar(), nar_batch()
    torch.manual_seed(3)
    first = [int(model(batch)["level"]) for _ in range(20)]
    torch.manual_seed(3)
    assert first == [int(model(batch)["level"]) for _ in range(20)]
    assert set(first) == {2, 3, 4}


def test_padding_and_prompt_positions_do_not_leak(nar_batch) -> None:
    model, batch = tiny_nar(), nar_batch()
    logits = model({**batch, "level": 2})["logits"]
    changed = {**batch, "codes": batch["codes"].clone(), "prompt_codes": batch["prompt_codes"].clone()}
    changed["codes"][1, :, 4:] = 0  # padding of item 1
    changed["prompt_codes"][1] = 3  # item 1 has an empty prompt
    again = model({**changed, "level": 2})["logits"]
    assert torch.allclose(again[1, :4], logits[1, :4], atol=1e-6)


def test_generate_is_greedy_level_by_level(nar_batch) -> None:
    model, batch = tiny_nar(), nar_batch()
    phones, langs, prompt = batch["phones"][0], batch["phone_langs"][0], batch["prompt_codes"][0]
    level1 = batch["codes"][0, 0]
    codes = model.generate(phones, langs, prompt, level1)
    assert codes.shape == (4, 7) and torch.equal(codes[0], level1)
    known = codes.unsqueeze(0)
    for level in (2, 3, 4):
        logits = model({
            "phones": phones[None], "phone_lens": torch.tensor([5]), "phone_langs": langs[None],
            "prompt_codes": prompt[None], "prompt_lens": torch.tensor([6]), "codes": known,
            "code_lens": torch.tensor([7]), "level": level,
        })["logits"]
        assert torch.equal(logits[0].argmax(-1), codes[level - 1]), f"level {level} is the argmax given levels < {level}"


def test_bad_inputs_are_clear_errors(nar_batch) -> None:
    model, batch = tiny_nar(), nar_batch()
    with pytest.raises(DataError, match="prompt_codes"):
        model({**batch, "prompt_codes": batch["prompt_codes"][:, :2]})
    with pytest.raises(DataError, match="level"):
        model({**batch, "level": 1})
    with pytest.raises(DataError, match="codes"):
        model({**batch, "codes": batch["codes"] + 16})


@pytest.mark.parametrize("name", ["valle_nar", "continuous_nar"])
@pytest.mark.parametrize("bad", [{"num_layers": 0}, {"ffn_dim": 0}, {"num_heads": 0}, {"dropout": -0.1}])
def test_impossible_sizes_are_config_errors(name: str, bad: dict) -> None:
    with pytest.raises(ConfigError, match=f"nar_lm '{name}'"):
        build("nar_lm", {"name": name, **TINY, **bad}, **CONTEXT)


def test_learns_a_level_quickly(nar_batch) -> None:
    torch.manual_seed(0)
    model = build("nar_lm", {"name": "valle_nar", **TINY}, **CONTEXT).train()
    batch = {**nar_batch(1), "level": 2}
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_valle_nar_fresh_loss_is_near_uniform_on_every_level(nar_batch) -> None:
    """Tied heads share the N(0, 1) code embeddings: their logits are scaled by d ** -0.5."""
    model, batch = tiny_nar(), nar_batch()
    for level in range(2, 5):
        loss = float(model({**batch, "level": level})["loss"].detach())
        assert loss < 1.5 * math.log(16), f"level {level}: fresh loss {loss:.2f} is far above uniform"
