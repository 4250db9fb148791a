"""The lean decoding step equals the Transformer stack's forward step for every linear-layer and cache kind."""
from __future__ import annotations

import pytest
import torch

from speechkit.infer.precision import apply_precision
from speechkit.nn import KVCache, TransformerStack
from speechkit.nn.lean_decode import LeanDecoder

HEADS, WIDTH = 4, 32


@pytest.fixture(autouse=True)
def no_fused_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the lean runner: packed fp32 stacks would otherwise take the fused one
    (tests/nn/test_fused_decode.py)."""
    monkeypatch.setenv("SPEECHKIT_FUSED_DECODE", "0")


def stack(seed: int = 0) -> TransformerStack:
    torch.manual_seed(seed)
    return TransformerStack(num_layers=2, d_model=WIDTH, num_heads=HEADS, ffn_dim=64).eval()


def run_steps(model: TransformerStack, *, lean: bool, cache_dtype: torch.dtype, padded: bool = True) -> torch.Tensor:
    """Prefill 5 positions (the first row left-padded), then 4 steps -> FloatTensor[B, 4, D]."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, WIDTH, generator=generator)
    valid = torch.ones(2, 5, dtype=torch.bool)
    if padded:
        valid[0, :2] = False
    cache = model.new_cache(2, 9, dtype=cache_dtype, device=torch.device("cpu"))
    cache.mark_valid(valid, 0)
    cache.key_valid[:, 5:] = True
    prefix = valid[:, None, None, :] & torch.ones(5, 5, dtype=torch.bool).tril()
    outputs = []
    with torch.inference_mode():
        model(x[:, :5], prefix, cache=cache, start=0)
        for position in range(5, 9):
            step = x[:, position : position + 1]
            if lean:
                outputs.append(model.decode_step(step, cache, position))
                assert isinstance(cache.step_runner, LeanDecoder)
            else:
                outputs.append(model(step, cache.step_mask(position + 1), cache=cache, start=position))
            assert cache.length == position + 1
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("precision", ["none", "fp32", "bf16", "int8"])
@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16])
def test_lean_step_is_identical_to_the_forward_step(precision: str, cache_dtype: torch.dtype) -> None:
    """Same operations in the same order: bit-identical, with plain, packed, bf16 or int8 linears."""
    results = []
    for lean in (False, True):
        model = stack()
        if precision != "none":
            apply_precision(model, precision)
        results.append(run_steps(model, lean=lean, cache_dtype=cache_dtype))
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize(("cache_dtype", "error"), [(torch.int8, 0.05), (torch.quint4x2, 0.5)])
def test_lean_step_with_a_quantised_cache_matches_the_dequantised_forward_step(cache_dtype: torch.dtype,
                                                                              error: float) -> None:
    model = stack()
    module_path = run_steps(model, lean=False, cache_dtype=cache_dtype)
    lean = run_steps(model, lean=True, cache_dtype=cache_dtype)
    assert torch.allclose(module_path, lean, atol=1e-4)
    exact = run_steps(model, lean=True, cache_dtype=torch.float32)
    assert (lean - exact).abs().max() < error  # keys/values rounded to 8 or 4 bits


def test_a_plan_lives_for_one_cache_so_swapped_layers_are_seen() -> None:
    model = stack()
    plain = run_steps(model, lean=True, cache_dtype=torch.float32, padded=False)
    apply_precision(model, "bf16")  # after a generation: the next cache gets a new plan
    reduced = run_steps(model, lean=True, cache_dtype=torch.float32, padded=False)
    reference = run_steps(model, lean=False, cache_dtype=torch.float32, padded=False)
    assert torch.equal(reduced, reference) and not torch.equal(reduced, plain)


def test_training_gradients_and_conditioned_stacks_take_the_forward_path(monkeypatch: pytest.MonkeyPatch) -> None:
    model = stack()
    monkeypatch.setenv("SPEECHKIT_LEAN_DECODE", "0")
    cache = model.new_cache(1, 3, dtype=torch.float32, device=torch.device("cpu"))
    with torch.no_grad():
        model.decode_step(torch.randn(1, 1, WIDTH), cache, 0)
    assert cache.step_runner is None
    monkeypatch.delenv("SPEECHKIT_LEAN_DECODE")
    cache = model.new_cache(1, 3, dtype=torch.float32, device=torch.device("cpu"))
    x = torch.randn(1, 1, WIDTH)
    with torch.no_grad():
        model.decode_step(x, cache, 0)
    assert isinstance(cache.step_runner, LeanDecoder)
    cache = model.new_cache(1, 3, dtype=torch.float32, device=torch.device("cpu"))
    model.decode_step(x, cache, 0)  # gradients enabled
    assert cache.step_runner is None
    conditioned = TransformerStack(num_layers=1, d_model=WIDTH, num_heads=HEADS, ffn_dim=64, num_conditions=2).eval()
    assert not LeanDecoder.supports(conditioned)
    with pytest.raises(RuntimeError, match="overflow"):
        with torch.no_grad():
            model.decode_step(x, KVCache(num_layers=2, batch_size=1, num_heads=HEADS, head_dim=8, max_length=1), 1)
