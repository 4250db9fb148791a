"""Whole-sequence attention in bfloat16 products: the compiled kernel computes exactly the rounding
its reference describes, stays close to float32 attention, and the layers use it when told to."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speechkit.errors import ConfigError
from speechkit.infer.precision import apply_precision
from speechkit.nn.attention import MultiHeadAttention
from speechkit.nn.bf16_attention import bf16_attention, bf16_attention_supported, reference_bf16_attention
from speechkit.nn.transformer import TransformerStack

needs_kernel = pytest.mark.skipif(not bf16_attention_supported(64), reason="needs AVX512-BF16 and the compiled kernels")


def qkv_views(batch: int, heads: int, length: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Queries, keys and values as a fused QKV projection gives them: strided views [B, H, N, Dh]."""
    qkv = torch.randn(batch, length, 3, heads, dim, generator=torch.Generator().manual_seed(seed))
    return tuple(qkv.permute(2, 0, 3, 1, 4).unbind(0))


def key_padding(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """BoolTensor[B, 1, 1, S]: random keys masked out, the first of each row kept."""
    valid = torch.rand(batch, length, generator=torch.Generator().manual_seed(seed)) > 0.3
    valid[:, 0] = True
    return valid[:, None, None, :]


@needs_kernel
@pytest.mark.parametrize("dim", [32, 64, 96, 128, 160, 256])
@pytest.mark.parametrize("length", [1, 9, 31, 32, 33, 70])
@pytest.mark.parametrize("masking", ["none", "padding", "causal"])
def test_kernel_computes_the_reference_rounding(dim: int, length: int, masking: str) -> None:
    query, key, value = qkv_views(2, 3, length, dim)
    mask = {"none": None, "padding": key_padding(2, length),
            "causal": torch.ones(length, length, dtype=torch.bool).tril()}[masking]
    out = bf16_attention(query, key, value, mask)
    assert out.shape == (2, 3, length, dim)
    expected = reference_bf16_attention(query, key, value, mask)
    # the same roundings: only the order of float32 sums and the exponential's last bits differ, which
    # can move a probability across a bfloat16 rounding boundary (one step: 2^-8 of it, so at most
    # 2^-8 of the largest value in all)
    torch.testing.assert_close(out, expected, rtol=0, atol=2**-8 * float(value.abs().max()))
    assert (out - expected).abs().mean() < 1e-4
    # and close to float32 attention: the bfloat16 roundings of queries, keys, values, probabilities
    exact = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    assert (out - exact).abs().max() < 0.03 * exact.abs().max()


@needs_kernel
def test_more_queries_than_keys_and_a_mask_per_head() -> None:
    generator = torch.Generator().manual_seed(3)
    query = torch.randn(1, 4, 21, 64, generator=generator)
    key, value = torch.randn(2, 1, 4, 13, 64, generator=generator)
    mask = torch.rand(1, 4, 21, 13, generator=generator) > 0.5
    mask[..., 0] = True
    torch.testing.assert_close(bf16_attention(query, key, value, mask), reference_bf16_attention(query, key, value, mask),
                               rtol=1e-3, atol=1e-3)


@needs_kernel
def test_a_query_with_no_key_gives_zeros() -> None:
    query, key, value = qkv_views(1, 2, 5, 64)
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    mask[0, 0, 3] = False  # query 3 sees nothing
    out = bf16_attention(query, key, value, mask)
    assert torch.equal(out[:, :, 3], torch.zeros(1, 2, 64))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference_bf16_attention(query, key, value, mask), rtol=1e-3, atol=1e-3)


def test_unsupported_inputs_use_torch_attention() -> None:
    query, key, value = qkv_views(2, 2, 7, 16)  # head size 16: not the kernel's (nor 48, nor 288)
    assert not any(bf16_attention_supported(size) for size in (16, 48, 288))
    torch.testing.assert_close(bf16_attention(query, key, value), F.scaled_dot_product_attention(query, key, value))
    query, key, value = qkv_views(1, 2, 7, 64)
    additive = torch.zeros(7, 7).masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))  # a float mask
    torch.testing.assert_close(bf16_attention(query, key, value, additive),
                               F.scaled_dot_product_attention(query, key, value, attn_mask=additive))
    leaf = query.detach().clone().requires_grad_(True)  # gradients: torch's attention, which has them
    bf16_attention(leaf, key, value).sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


@needs_kernel
def test_layers_attend_in_bf16_when_told_and_stay_close() -> None:
    torch.manual_seed(0)
    layer = MultiHeadAttention(128, 2).eval()
    x = torch.randn(2, 40, 128)
    mask = key_padding(2, 40)
    with torch.inference_mode():
        exact = layer(x, mask)
        layer.sequence_precision = "bf16"
        rounded = layer(x, mask)
    assert not torch.equal(rounded, exact)
    assert (rounded - exact).abs().max() < 0.03 * exact.abs().max()


def test_apply_precision_sets_the_attention_arithmetic() -> None:
    def arithmetic(precision: str, **options: str) -> set[str]:
        stack = TransformerStack(num_layers=2, d_model=64, num_heads=2, ffn_dim=128).eval()
        apply_precision(stack, precision, pack=False, **options)
        return {m.sequence_precision for m in stack.modules() if isinstance(m, MultiHeadAttention)}

    assert arithmetic("fp32") == {"fp32"}
    assert arithmetic("bf16") == {"bf16"}
    assert arithmetic("int8") == {"bf16"}
    assert arithmetic("bf16", attention="fp32") == {"fp32"}
    assert arithmetic("fp32", attention="bf16") == {"bf16"}
    with pytest.raises(ConfigError, match="attention arithmetic"):
        arithmetic("fp32", attention="fp16")
