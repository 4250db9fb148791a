"""The static decoding step (position in a tensor, whole-cache masked attention) equals the lean
step; on CUDA the recorded graph replays it, and stacks take it by default."""
from __future__ import annotations

import weakref

import pytest
import torch

from speechkit.infer.precision import apply_precision
from speechkit.nn import TransformerStack
from speechkit.nn.decode_kernel import unpack_int4
from speechkit.nn.graph_decode import GraphDecoder, StaticStepDecoder
from speechkit.nn.lean_decode import LeanDecoder

HEADS, WIDTH, PREFIX, LENGTH = 4, 32, 5, 12


@pytest.fixture(autouse=True)
def no_fused_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused step (CPU, packed fp32) would otherwise take the lean runner's place."""
    monkeypatch.setenv("SPEECHKIT_FUSED_DECODE", "0")


def stack(device: torch.device, precision: str = "none") -> TransformerStack:
    torch.manual_seed(0)
    model = TransformerStack(num_layers=2, d_model=WIDTH, num_heads=HEADS, ffn_dim=64).eval().to(device)
    return apply_precision(model, precision) if precision != "none" else model


def run_steps(model: TransformerStack, step: object, cache_dtype: torch.dtype, steps: int = 4) -> tuple[torch.Tensor, object]:
    """Prefill PREFIX positions (the first row left-padded), then ``steps`` steps through ``step``
    ("lean", "static" or "stack": ``model.decode_step``) -> (FloatTensor[B, steps, D], the cache)."""
    device = next(model.parameters()).device
    x = torch.randn(2, PREFIX + steps, WIDTH, generator=torch.Generator().manual_seed(1)).to(device)
    valid = torch.ones(2, PREFIX, dtype=torch.bool, device=device)
    valid[0, :2] = False
    cache = model.new_cache(2, LENGTH, dtype=cache_dtype, device=device)
    cache.mark_valid(valid, 0)
    cache.key_valid[:, PREFIX:] = True
    prefix = valid[:, None, None, :] & torch.ones(PREFIX, PREFIX, dtype=torch.bool, device=device).tril()
    outputs = []
    with torch.inference_mode():
        model(x[:, :PREFIX], prefix, cache=cache, start=0)
        static = StaticStepDecoder(model, cache)
        lean = LeanDecoder(model)
        for position in range(PREFIX, PREFIX + steps):
            new = x[:, position : position + 1]
            if step == "static":
                outputs.append(static(new, torch.tensor(position, device=device)))
            elif step == "lean":
                outputs.append(lean(new, cache, position))
            else:
                outputs.append(model.decode_step(new, cache, position))
    return torch.cat(outputs, dim=1), cache


@pytest.mark.parametrize("precision", ["none", "bf16"])
@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16, torch.int8, torch.quint4x2])
def test_static_step_equals_the_lean_step(device: torch.device, precision: str, cache_dtype: torch.dtype) -> None:
    """Same outputs and the same cache contents (up to float rounding, one step of 8- or 4-bit
    rounding), though it attends over the whole cache."""
    lean, lean_cache = run_steps(stack(device, precision), "lean", cache_dtype)
    static, static_cache = run_steps(stack(device, precision), "static", cache_dtype)
    assert torch.allclose(static, lean, atol=1e-5, rtol=1e-5)
    written = PREFIX + 4
    quantized = cache_dtype in (torch.int8, torch.quint4x2)
    levels = unpack_int4 if cache_dtype == torch.quint4x2 else (lambda stored: stored)
    for name in ("keys", "values"):
        got, expected = getattr(static_cache, name)[..., :written, :], getattr(lean_cache, name)[..., :written, :]
        assert (levels(got).float() - levels(expected).float()).abs().max() <= (1 if quantized else 1e-5)
    if quantized:
        for name in ("key_scales", "value_scales"):
            assert torch.allclose(getattr(static_cache, name)[..., :written], getattr(lean_cache, name)[..., :written],
                                  rtol=1e-4, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.int8, torch.quint4x2])
def test_cuda_stacks_replay_a_graph_that_equals_the_lean_step(cache_dtype: torch.dtype,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    device = torch.device("cuda")
    graphed, cache = run_steps(stack(device), "stack", cache_dtype, steps=6)
    assert isinstance(cache.step_runner, GraphDecoder) and cache.length == PREFIX + 6
    lean, _ = run_steps(stack(device), "lean", cache_dtype, steps=6)
    assert torch.allclose(graphed, lean, atol=1e-5, rtol=1e-5)
    monkeypatch.setenv("SPEECHKIT_CUDA_GRAPHS", "0")
    _, cache = run_steps(stack(device), "stack", cache_dtype)
    assert isinstance(cache.step_runner, LeanDecoder)


def test_cpu_stacks_do_not_record_graphs() -> None:
    _, cache = run_steps(stack(torch.device("cpu")), "stack", torch.float32)
    assert isinstance(cache.step_runner, LeanDecoder)


def test_the_static_step_does_not_keep_its_cache_alive() -> None:
    """A runner lives on its cache (``cache.step_runner``): a reference back would keep every
    generation's cache, and on CUDA its graph, until the garbage collector runs."""
    model = stack(torch.device("cpu"))
    cache = model.new_cache(1, LENGTH, dtype=torch.float32, device=torch.device("cpu"))
    cache.step_runner = step = StaticStepDecoder(model, cache)
    alive = weakref.ref(cache)
    del cache
    assert alive() is None, "freed by reference counting alone"
    with pytest.raises(RuntimeError, match="freed"):
        step(torch.zeros(1, 1, WIDTH), torch.tensor(0))
