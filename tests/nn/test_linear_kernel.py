"""The few-rows linear kernel equals torch (fp32, bf16 and int8 weights), and RowsLinear layers
decode like the layers they replace."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from speechkit.infer.precision import RowsLinear, apply_precision
from speechkit.nn.linear_kernel import linear_kernel_available, quantize_rows_int8, reference_rows_linear, rows_linear


def test_the_kernel_builds_here() -> None:
    assert linear_kernel_available(), "a C++ compiler and ninja are installed by tools/install.sh"


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 11])
@pytest.mark.parametrize("shape", [(8, 64), (7, 33), (13, 48), (1, 16)])
def test_kernel_equals_reference_for_every_weight_type(rows: int, shape: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(rows * 100 + shape[0])
    out_features, in_features = shape
    x = torch.randn(rows, in_features, generator=generator)
    weight = torch.randn(out_features, in_features, generator=generator)
    bias = torch.randn(out_features, generator=generator)
    int8, scale = quantize_rows_int8(weight)
    cases = [(weight, None), (weight.to(torch.bfloat16).contiguous(), None), (int8, scale)]
    for stored, stored_scale in cases:
        for with_bias in (None, bias):
            got = rows_linear(x, stored, stored_scale, with_bias)
            expected = reference_rows_linear(x, stored, stored_scale, with_bias)
            assert got.shape == (rows, out_features) and got.dtype == torch.float32
            assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (stored.dtype, with_bias is None)


def test_int8_quantisation_is_per_row_and_close() -> None:
    weight = torch.randn(16, 64) * torch.logspace(-2, 1, 16)[:, None]  # rows of very different scales
    int8, scale = quantize_rows_int8(weight)
    assert int8.dtype == torch.int8 and scale.shape == (16,) and int(int8.abs().max()) == 127
    assert ((int8.float() * scale[:, None] - weight).abs() <= scale[:, None] / 2 + 1e-7).all()


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(RuntimeError, match="per-row scale"):
        rows_linear(torch.randn(1, 16), torch.zeros(4, 16, dtype=torch.int8))
    with pytest.raises(RuntimeError, match="weight must be"):
        rows_linear(torch.randn(1, 16), torch.randn(4, 8))


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-5), ("bf16", 2e-2), ("int8", 3e-2)])
def test_rows_linear_matches_nn_linear_for_few_and_many_rows(precision: str, tolerance: float) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(48, 20)
    layer = RowsLinear(linear, precision=precision, max_rows=4)
    with torch.inference_mode():
        for shape in ((1, 1, 48), (2, 2, 48), (3, 7, 48)):  # 1 and 4 rows: the kernel; 21 rows: torch
            x = torch.randn(*shape)
            expected = linear(x)
            got = layer(x)
            assert got.shape == expected.shape and got.dtype == torch.float32
            assert (got - expected).abs().max() <= tolerance * expected.abs().max(), (precision, shape)


def test_int8_weight_only_rows_do_not_depend_on_the_batch() -> None:
    torch.manual_seed(1)
    layer = RowsLinear(nn.Linear(64, 32), precision="int8")
    x = torch.randn(8, 64)
    x[3] *= 100.0  # one large row (dynamic quantisation would coarsen every row's scale)
    with torch.inference_mode():
        batched = layer(x)
        alone = torch.cat([layer(x[row : row + 1]) for row in range(8)])
    assert torch.allclose(batched, alone, atol=1e-5, rtol=1e-5)


def test_apply_precision_with_rows_kernel_swaps_every_linear_layer() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Sequential(nn.Linear(32, 8)))
    x = torch.randn(2, 16)
    with torch.inference_mode():
        expected = model(x)
        apply_precision(model, "fp32", rows_kernel=True, kv_cache="bf16")
        got = model(x)
    layers = [module for module in model.modules() if isinstance(module, RowsLinear)]
    assert len(layers) == 2 and not any(type(module) is nn.Linear for module in model.modules())
    assert model.kv_cache_dtype == torch.bfloat16
    assert torch.allclose(got, expected, atol=1e-5)
