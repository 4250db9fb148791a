"""The compiled decoding-attention kernel equals torch's attention (fp32 and bf16 caches, masks, views)."""
from __future__ import annotations

import pytest
import torch

from speechkit.nn import decode_kernel
from speechkit.nn.attention import KVCache, MultiHeadAttention, single_query_attention
from speechkit.nn.decode_kernel import decode_attention, decode_kernel_available, reference_decode_attention


def cache_views(batch: int, heads: int, length: int, dim: int, dtype: torch.dtype, seed: int = 0):
    """Keys/values as a KV cache holds them: views [B, H, :length] of a longer buffer."""
    generator = torch.Generator().manual_seed(seed)
    cache = KVCache(num_layers=2, batch_size=batch, num_heads=heads, head_dim=dim, max_length=length + 7, dtype=dtype)
    keys = torch.randn(batch, heads, length, dim, generator=generator)
    values = torch.randn(batch, heads, length, dim, generator=generator)
    return cache.write(1, keys, values, 0)


def int8_cache_views(batch: int, heads: int, length: int, dim: int, seed: int = 0):
    """An int8 cache's keys, values and scales [B, H, :length] (views) and the float keys/values."""
    generator = torch.Generator().manual_seed(seed)
    cache = KVCache(num_layers=2, batch_size=batch, num_heads=heads, head_dim=dim, max_length=length + 7, dtype=torch.int8)
    keys = torch.randn(batch, heads, length, dim, generator=generator)
    values = torch.randn(batch, heads, length, dim, generator=generator)
    cache.store(1, keys, values, 0)
    views = (cache.keys[1, :, :, :length], cache.values[1, :, :, :length],
             cache.key_scales[1, :, :, :length], cache.value_scales[1, :, :, :length])
    return views, (keys, values)


def test_the_kernel_builds_here() -> None:
    assert decode_kernel_available(), "a C++ compiler and ninja are installed by tools/install.sh"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_equals_reference_on_cache_views_with_and_without_masks(dtype: torch.dtype) -> None:
    key, value = cache_views(3, 4, 37, 16, dtype)
    query = torch.randn(3, 4, 1, 16, generator=torch.Generator().manual_seed(1))
    valid = torch.ones(3, 37, dtype=torch.bool)
    valid[1, :5] = False  # a left-padded prompt
    valid[2, 30:] = False
    for mask in (None, valid):
        with torch.inference_mode():
            got = decode_attention(query, key, value, mask)
        expected = reference_decode_attention(query, key.float(), value.float(), mask)
        assert got.shape == (3, 4, 1, 16) and got.dtype == torch.float32
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    if dtype == torch.float32:
        expected = single_query_attention(query, key, value, valid[:, None, None, :])
        assert torch.allclose(decode_attention(query, key, value, valid), expected, atol=1e-5)


def test_fully_masked_rows_give_zeros_and_bad_shapes_are_refused() -> None:
    key, value = cache_views(1, 2, 5, 8, torch.float32)
    query = torch.randn(1, 2, 1, 8)
    none = torch.zeros(1, 5, dtype=torch.bool)
    assert torch.equal(decode_attention(query, key, value, none), torch.zeros(1, 2, 1, 8))
    with pytest.raises(RuntimeError, match="query must be"):
        decode_attention(torch.randn(1, 2, 3, 8), key, value)


def test_attention_layer_decodes_the_same_with_either_cache_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    layer = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    with torch.inference_mode():
        full = layer(x, causal)
        outputs = {}
        for dtype in (torch.float32, torch.bfloat16):
            cache = KVCache(num_layers=1, batch_size=2, num_heads=4, head_dim=8, max_length=12, dtype=dtype)
            first = layer(x[:, :5], causal[:5, :5], cache=cache, start=0)
            steps = [layer(x[:, i : i + 1], None, cache=cache, start=i) for i in range(5, 9)]
            outputs[dtype] = torch.cat([first, *steps], dim=1)
        monkeypatch.setattr(decode_kernel, "_kernel", lambda: None)  # the torch fallback
        cache = KVCache(num_layers=1, batch_size=2, num_heads=4, head_dim=8, max_length=12)
        layer(x[:, :5], causal[:5, :5], cache=cache, start=0)
        fallback = torch.cat([layer(x[:, i : i + 1], None, cache=cache, start=i) for i in range(5, 9)], dim=1)
    assert torch.allclose(outputs[torch.float32], full, atol=1e-5)
    assert torch.allclose(fallback, full[:, 5:], atol=1e-5)
    assert torch.allclose(outputs[torch.bfloat16], full, atol=3e-2)  # keys/values rounded to bf16


@pytest.mark.parametrize("dim", [16, 48, 64, 8])
@pytest.mark.parametrize("length", [37, 64, 3])
def test_kernel_equals_reference_for_every_cache_dtype_head_size_and_length(dim: int, length: int) -> None:
    """Blocked path (head sizes 16..128, 16 keys at a time plus a tail) and the scalar one (8)."""
    query = torch.randn(2, 3, 1, dim, generator=torch.Generator().manual_seed(3)) * 2
    valid = torch.ones(2, length, dtype=torch.bool)
    valid[1, : length // 3] = False
    for dtype in (torch.float32, torch.bfloat16):
        key, value = cache_views(2, 3, length, dim, dtype)
        for mask in (None, valid):
            with torch.inference_mode():
                got = decode_attention(query, key, value, mask)
            assert torch.allclose(got, reference_decode_attention(query, key, value, mask), atol=2e-5, rtol=1e-5)
    (key, value, key_scales, value_scales), _ = int8_cache_views(2, 3, length, dim)
    for mask in (None, valid):
        with torch.inference_mode():
            got = decode_attention(query, key, value, mask, key_scales, value_scales)
        expected = reference_decode_attention(query, key, value, mask, key_scales, value_scales)
        if dim % 32 == 0:  # integer products: the query rounded to int16 first, as the kernel documents
            rounded_query = kernel_int16_query(query)
            if dim % 64 == 0:  # and the weights of the values too
                rounded = kernel_int16_weights_reference(rounded_query, key, value, mask, key_scales, value_scales)
            else:
                rounded = reference_decode_attention(rounded_query, key, value, mask, key_scales, value_scales)
            assert torch.allclose(got, rounded, atol=2e-5, rtol=1e-5)
            assert torch.allclose(got, expected, atol=5e-4, rtol=0)  # that rounding: < 2e-5 of max |q|
            assert not torch.equal(got, expected)
        else:
            assert torch.allclose(got, expected, atol=2e-5, rtol=1e-5)


def kernel_int16_weights_reference(query, key, value, mask, key_scales, value_scales) -> torch.Tensor:
    """reference_decode_attention with the kernel's int8-value rounding (head sizes that are
    multiples of 64): the softmax numerators times the value scales, rounded to int16 steps of
    their largest / 32767 per sequence and head, multiply the int8 values."""
    keys = key.float() * key_scales.unsqueeze(-1)
    scores = torch.matmul(query * query.shape[-1] ** -0.5, keys.transpose(-1, -2))  # [B, H, 1, S]
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    numerators = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    weights = numerators * value_scales.unsqueeze(-2)
    step = weights.amax(dim=-1, keepdim=True) / 32767
    rounded = torch.round(weights / step) * step
    return torch.matmul(rounded, value.float()) / numerators.sum(dim=-1, keepdim=True)


def kernel_int16_query(query: torch.Tensor) -> torch.Tensor:
    """The query as the kernel multiplies int8 keys with it (head sizes that are multiples of 32):
    times the softmax scale, rounded to int16 steps of max |q| / 32767 per sequence and head, and
    divided by the scale again (so the reference applies it once more)."""
    scale = query.shape[-1] ** -0.5
    scaled = query * scale
    step = scaled.abs().amax(dim=-1, keepdim=True) / 32767
    step = torch.where(step > 0, step, torch.ones_like(step))
    return torch.round(scaled / step) * step / scale


def test_int8_cache_rounds_each_position_and_head_and_needs_its_scales() -> None:
    (key, value, key_scales, value_scales), (keys, values) = int8_cache_views(1, 2, 20, 16)
    assert key.dtype == torch.int8 and key.abs().amax(-1).eq(127).all()  # each row uses the full range
    dequantized = key.float() * key_scales.unsqueeze(-1)
    assert (dequantized - keys).abs().max() <= key_scales.max() / 2 + 1e-6  # half a step at most
    query = torch.randn(1, 2, 1, 16)
    exact = reference_decode_attention(query, keys, values)
    with torch.inference_mode():
        got = decode_attention(query, key, value, None, key_scales, value_scales)
    assert (got - exact).abs().max() < 0.05
    with pytest.raises(ValueError, match="needs key_scales"):
        decode_attention(query, key, value)
    zero = KVCache(num_layers=1, batch_size=1, num_heads=1, head_dim=4, max_length=2, dtype=torch.int8)
    zero.store(0, torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4), 0)
    assert torch.equal(zero.dequantized(0, 1)[0], torch.zeros(1, 1, 1, 4))


@pytest.mark.parametrize("dim", [16, 20, 64])  # the kernel's 16-wide loop, with a scalar tail, several vectors
@pytest.mark.parametrize("use_kernel", [True, False])
def test_store_quantized_rounds_exactly_like_quantize_rows(use_kernel: bool, dim: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from speechkit.nn.attention import quantize_rows
    from speechkit.nn.decode_kernel import store_quantized

    if not use_kernel:
        monkeypatch.setattr(decode_kernel, "_kernel", lambda: None)
    qkv = torch.randn(3, 3, 4, dim, generator=torch.Generator().manual_seed(5)) * 3
    qkv[1, 1, 2] = 0.0  # an all-zero row: scale 1
    qkv[0, 1, 0, :4] = torch.tensor([0.5, -0.5, 1.5, 2.5]) * qkv[0, 1, 0].abs().max() / 127  # exact halves
    qkv[2, 1, 3, -1] = qkv[2, 1, 3].abs().max() * 1.5  # the largest element last (in the tail where there is one)
    cache = KVCache(num_layers=1, batch_size=3, num_heads=4, head_dim=dim, max_length=5, dtype=torch.int8)
    store_quantized(qkv[:, 1], cache.keys[0, :, :, 2], cache.key_scales[0, :, :, 2])  # a strided view, like the lean step's
    expected, scales = quantize_rows(qkv[:, 1])
    assert torch.equal(cache.keys[0, :, :, 2], expected) and torch.equal(cache.key_scales[0, :, :, 2], scales)
    assert cache.key_scales[0, 1, 2, 2] == 1.0 and not cache.keys[0, :, :, 3].any()  # only position 2 written


def test_int8_values_summed_in_integers_do_not_overflow_over_long_caches() -> None:
    """Uniform attention over 1100 positions of values at the int8 limit: each int32 lane would pass
    2^31 without the kernel's periodic move to floats (every 512 positions)."""
    batch, heads, length, dim = 1, 2, 1100, 64
    key = torch.zeros(batch, heads, length, dim, dtype=torch.int8)
    value = torch.full((batch, heads, length, dim), 127, dtype=torch.int8)
    value[:, 1, :, ::2] = -127
    scales = torch.ones(batch, heads, length)
    query = torch.randn(batch, heads, 1, dim)
    with torch.inference_mode():
        got = decode_attention(query, key, value, None, scales, scales)
    expected = reference_decode_attention(query, key, value, None, scales, scales)
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-6)
    assert got[0, 0].eq(127).all() and got[0, 1, 0, ::2].eq(-127).all()


def test_int4_rows_pack_two_levels_per_byte_and_unpack_exactly() -> None:
    from speechkit.nn.decode_kernel import dequantize_rows, quantize_rows, unpack_int4

    x = torch.tensor([[7.0, -7.0, 3.5, 0.0, 1.0, -2.0], [0.0] * 6])  # 3.5 / 1: a half, to even (4)
    packed, scales = quantize_rows(x, bits=4)
    assert packed.dtype == torch.uint8 and packed.shape == (2, 3) and torch.equal(scales, torch.tensor([1.0, 1.0]))
    # byte j: level j (low nibble) | level j + 3 (high nibble), two's complement
    assert packed[0].tolist() == [0x07 | (0 << 4), 0x09 | (1 << 4), 0x04 | (0x0E << 4)]
    assert torch.equal(unpack_int4(packed), torch.tensor([[7, -7, 4, 0, 1, -2], [0] * 6], dtype=torch.int8))
    rows = torch.randn(5, 4, 64, generator=torch.Generator().manual_seed(0))
    packed, scales = quantize_rows(rows, bits=4)
    assert unpack_int4(packed).abs().amax(-1).eq(7).all()  # each row uses the full range
    assert ((dequantize_rows(packed, scales) - rows).abs() <= scales[..., None] / 2 + 1e-6).all()  # half a step
    with pytest.raises(ValueError, match="even head size"):
        quantize_rows(torch.randn(2, 5), bits=4)
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        quantize_rows(rows, bits=2)


def int4_cache_views(batch: int, heads: int, length: int, dim: int, seed: int = 0):
    """An int4 cache's packed keys, values and scales [B, H, :length] (views), as int8 levels, and the float keys/values."""
    generator = torch.Generator().manual_seed(seed)
    cache = KVCache(num_layers=2, batch_size=batch, num_heads=heads, head_dim=dim, max_length=length + 7,
                    dtype=torch.quint4x2)
    keys = torch.randn(batch, heads, length, dim, generator=generator)
    values = torch.randn(batch, heads, length, dim, generator=generator)
    cache.store(1, keys, values, 0)
    assert cache.keys.dtype == torch.uint8 and cache.keys.shape[-1] == dim // 2
    return (cache.keys[1, :, :, :length], cache.values[1, :, :, :length],
            cache.key_scales[1, :, :, :length], cache.value_scales[1, :, :, :length]), (keys, values)


@pytest.mark.parametrize("dim", [64, 128])
@pytest.mark.parametrize("length", [37, 64, 3, 1100])  # 16 keys at a time plus a tail; past the int32 flush
def test_int4_kernel_multiplies_the_same_integers_as_for_int8_levels(dim: int, length: int) -> None:
    """The int4 kernel unpacks nibbles into the same int16 products as the int8 kernel takes from
    the same levels stored as int8: equal results, and within the int16 roundings of torch's."""
    from speechkit.nn.decode_kernel import int4_attention_supported, unpack_int4

    assert int4_attention_supported(dim)
    (key, value, key_scales, value_scales), _ = int4_cache_views(2, 3, length, dim)
    query = torch.randn(2, 3, 1, dim, generator=torch.Generator().manual_seed(3)) * 2
    valid = torch.ones(2, length, dtype=torch.bool)
    valid[1, : length // 3] = False
    for mask in (None, valid):
        with torch.inference_mode():
            got = decode_attention(query, key, value, mask, key_scales, value_scales)
            as_int8 = decode_attention(query, unpack_int4(key), unpack_int4(value), mask, key_scales, value_scales)
        assert torch.allclose(got, as_int8, atol=1e-6, rtol=1e-6)
        rounded = kernel_int16_weights_reference(kernel_int16_query(query), unpack_int4(key), unpack_int4(value), mask,
                                                 key_scales, value_scales)
        assert torch.allclose(got, rounded, atol=2e-5, rtol=1e-5)
        expected = reference_decode_attention(query, key, value, mask, key_scales, value_scales)  # torch, dequantised
        assert torch.allclose(got, expected, atol=5e-4, rtol=0)


def test_int4_cache_of_other_head_sizes_is_attended_by_torch() -> None:
    from speechkit.nn.decode_kernel import compiled_kernels, int4_attention_supported

    (key, value, key_scales, value_scales), _ = int4_cache_views(1, 2, 20, 32)
    query = torch.randn(1, 2, 1, 32)
    assert not int4_attention_supported(32)
    with torch.inference_mode():
        got = decode_attention(query, key, value, None, key_scales, value_scales)
    assert torch.allclose(got, reference_decode_attention(query, key, value, None, key_scales, value_scales), atol=1e-6)
    with pytest.raises(RuntimeError, match="head size 64 or 128"):
        compiled_kernels().decode_attention(query, key, value, None, key_scales, value_scales)
    with pytest.raises(ValueError, match="even head size"):
        KVCache(num_layers=1, batch_size=1, num_heads=1, head_dim=5, max_length=2, dtype=torch.quint4x2)


@pytest.mark.parametrize("dim", [20, 64, 96])  # the scalar pairs only; the 16-wide loop; both
@pytest.mark.parametrize("use_kernel", [True, False])
def test_store_quantized_rounds_int4_exactly_like_quantize_rows(use_kernel: bool, dim: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from speechkit.nn.decode_kernel import quantize_rows, store_quantized

    if not use_kernel:
        monkeypatch.setattr(decode_kernel, "_kernel", lambda: None)
    qkv = torch.randn(3, 3, 4, dim, generator=torch.Generator().manual_seed(5)) * 3
    qkv[1, 1, 2] = 0.0  # an all-zero row: scale 1
    qkv[0, 1, 0, :4] = torch.tensor([0.5, -0.5, 1.5, 2.5]) * qkv[0, 1, 0].abs().max() / 7  # exact halves
    qkv[2, 1, 3, -1] = qkv[2, 1, 3].abs().max() * 1.5  # the largest element last (a high nibble)
    cache = KVCache(num_layers=1, batch_size=3, num_heads=4, head_dim=dim, max_length=5, dtype=torch.quint4x2)
    store_quantized(qkv[:, 1], cache.keys[0, :, :, 2], cache.key_scales[0, :, :, 2])
    expected, scales = quantize_rows(qkv[:, 1], bits=4)
    assert torch.equal(cache.keys[0, :, :, 2], expected) and torch.equal(cache.key_scales[0, :, :, 2], scales)
    assert cache.key_scales[0, 1, 2, 2] == 1.0 and not cache.keys[0, :, :, 3].any()  # only position 2 written


def test_int4_cache_stores_a_step_as_its_prefill_does() -> None:
    generator = torch.Generator().manual_seed(9)
    keys, values = torch.randn(2, 3, 4, 64, generator=generator), torch.randn(2, 3, 4, 64, generator=generator)
    whole = KVCache(num_layers=1, batch_size=2, num_heads=3, head_dim=64, max_length=6, dtype=torch.quint4x2)
    whole.store(0, keys, values, 0)
    stepwise = KVCache(num_layers=1, batch_size=2, num_heads=3, head_dim=64, max_length=6, dtype=torch.quint4x2)
    for position in range(4):
        stepwise.store_position(0, keys[:, :, position], values[:, :, position], position)
    indexed = KVCache(num_layers=1, batch_size=2, num_heads=3, head_dim=64, max_length=6, dtype=torch.quint4x2)
    for position in range(4):
        indexed.store_at(0, keys[:, :, position], values[:, :, position], torch.tensor([position]))
    for cache in (stepwise, indexed):
        assert torch.equal(cache.keys, whole.keys) and torch.equal(cache.values, whole.values)
        assert torch.equal(cache.key_scales, whole.key_scales) and torch.equal(cache.value_scales, whole.value_scales)
    read_keys, read_values = whole.read(0, 4, torch.float32)
    assert read_keys.shape == keys.shape and (read_values - values).abs().max() <= whole.value_scales.max() / 2 + 1e-6
