"""The fused decoding step (one compiled call per step) against the layer-by-layer step."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from speechkit.infer.precision import PackedLinear, apply_precision
from speechkit.nn import TransformerStack
from speechkit.nn.decode_kernel import decode_kernel_available, dequantize_rows
from speechkit.nn.fused_decode import (FusedDecoder, pack_stream, quantize_inputs, quantize_stream, stream_linear,
                                      stream_weight, unpack_stream)
from speechkit.nn.lean_decode import LeanDecoder

pytestmark = pytest.mark.skipif(not decode_kernel_available(), reason="the compiled decoding kernels cannot be built here")

# widths whose projections are not multiples of the 64-output blocks (3 x 96 = 288, 200)
HEADS, WIDTH, FFN = 2, 96, 200
PROMPT, STEPS = 5, 4


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    saved = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(saved)


def packed_stack(seed: int = 0, *, gelu: str = "none", fused_step: bool = True, precision: str = "fp32") -> TransformerStack:
    torch.manual_seed(seed)
    model = TransformerStack(num_layers=2, d_model=WIDTH, num_heads=HEADS, ffn_dim=FFN).eval()
    for layer in model.layers:
        layer.ffn[1] = nn.GELU(approximate=gelu)
    for parameter in model.parameters():  # larger than the default init, so that rounding differences would show
        nn.init.normal_(parameter, std=0.2)
    return apply_precision(model, precision, fused_step=fused_step)


def decode(model: TransformerStack, x: torch.Tensor, *, fused: bool, cache_dtype: torch.dtype,
           valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefill PROMPT positions of x FloatTensor[B, PROMPT + STEPS, D], then STEPS decoding steps with
    the fused or the lean runner -> (outputs FloatTensor[B, STEPS, D], the cache's keys as float,
    dequantised)."""
    batch = x.shape[0]
    cache = model.new_cache(batch, PROMPT + STEPS, dtype=cache_dtype, device=torch.device("cpu"))
    prefix = torch.ones(PROMPT, PROMPT, dtype=torch.bool).tril()
    if valid is not None:
        cache.mark_valid(valid, 0)
        prefix = valid[:, None, None, :] & prefix
    cache.key_valid[:, PROMPT:] = True
    runner = FusedDecoder(model) if fused else LeanDecoder(model)
    outputs = []
    with torch.inference_mode():
        model(x[:, :PROMPT], prefix, cache=cache, start=0)
        for position in range(PROMPT, PROMPT + STEPS):
            outputs.append(runner(x[:, position : position + 1], cache, position))
            assert cache.length == position + 1
    keys = cache.keys.float() if cache.key_scales is None else dequantize_rows(cache.keys, cache.key_scales)
    return torch.cat(outputs, dim=1), keys


def test_stream_blocks_hold_64_outputs_per_block_zero_padded() -> None:
    weight = torch.randn(70, 5)
    blocks = pack_stream(weight)
    assert blocks.shape == (2, 5, 64) and blocks.is_contiguous()
    assert torch.equal(blocks[1, :, 3], weight[67]) and torch.equal(blocks[0, 2, :], weight[:64, 2])
    assert torch.equal(blocks[1, :, 6:], torch.zeros(5, 58))
    assert torch.equal(unpack_stream(blocks, 5)[:70], weight)


def test_bf16_stream_blocks_pair_consecutive_inputs() -> None:
    weight = torch.randn(70, 5)
    blocks = pack_stream(weight, torch.bfloat16)
    rounded = weight.to(torch.bfloat16)
    assert blocks.shape == (2, 3, 64, 2) and blocks.dtype == torch.bfloat16 and blocks.is_contiguous()
    assert torch.equal(blocks[1, 1, 3], rounded[67, 2:4]) and torch.equal(blocks[0, 0, 10], rounded[10, :2])
    assert torch.equal(blocks[:, 2, :, 1], torch.zeros(2, 64, dtype=torch.bfloat16))  # input 5 of 5: padding
    assert torch.equal(blocks[1, :, 6:], torch.zeros(3, 58, 2, dtype=torch.bfloat16))
    assert torch.equal(unpack_stream(blocks, 5)[:70], rounded.float())
    with pytest.raises(ValueError, match="float32, bfloat16 or int8"):
        pack_stream(weight, torch.float16)


@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16, torch.int8])
@pytest.mark.parametrize("gelu", ["none", "tanh"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_fused_step_matches_the_layer_by_layer_step(threads: int, cache_dtype: torch.dtype, gelu: str, precision: str) -> None:
    model = packed_stack(gelu=gelu, precision=precision)
    x = torch.randn(3, PROMPT + STEPS, WIDTH, generator=torch.Generator().manual_seed(1))
    valid = torch.ones(3, PROMPT, dtype=torch.bool)
    valid[0, :2] = False  # a left-padded prompt: masked for the whole generation
    fused, fused_keys = decode(model, x, fused=True, cache_dtype=cache_dtype, valid=valid)
    lean, lean_keys = decode(model, x, fused=False, cache_dtype=cache_dtype, valid=valid)
    assert fused.shape == (3, STEPS, WIDTH)
    # the same operations summed in another order: float rounding only (an int8 or bf16 cache may
    # round an entry to its neighbouring value, which moves later outputs a little more)
    tolerance = 1e-4 if cache_dtype == torch.float32 else 2e-2
    assert torch.allclose(fused, lean, atol=tolerance, rtol=0)
    assert torch.allclose(fused_keys, lean_keys, atol=tolerance * 10, rtol=0)
    assert fused_keys[:, :, :, PROMPT:].abs().sum() > 0  # the steps wrote their keys


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_fused_step_with_an_int4_cache_matches_the_layer_by_layer_step(threads: int, precision: str) -> None:
    """Head size 64, which the kernel attends over int4 pairs: the fused step stores and attends
    them as the lean step does (store_quantized, then decode_attention)."""
    torch.manual_seed(0)
    model = TransformerStack(num_layers=2, d_model=128, num_heads=2, ffn_dim=FFN).eval()
    for parameter in model.parameters():
        nn.init.normal_(parameter, std=0.2)
    apply_precision(model, precision)
    x = torch.randn(3, PROMPT + STEPS, 128, generator=torch.Generator().manual_seed(1))
    valid = torch.ones(3, PROMPT, dtype=torch.bool)
    valid[0, :2] = False
    cache = model.new_cache(3, PROMPT + STEPS, dtype=torch.quint4x2, device=torch.device("cpu"))
    assert FusedDecoder.supports(model, x[:, :1], cache)
    fused, fused_keys = decode(model, x, fused=True, cache_dtype=torch.quint4x2, valid=valid)
    lean, lean_keys = decode(model, x, fused=False, cache_dtype=torch.quint4x2, valid=valid)
    assert fused.shape == (3, STEPS, 128) and torch.allclose(fused, lean, atol=2e-2, rtol=0)
    assert fused_keys.dtype == torch.float32 and fused_keys[:, :, :, PROMPT:].abs().sum() > 0
    # the same levels and scales up to float rounding, but for rare elements rounded to a neighbouring level
    assert ((fused_keys - lean_keys).abs() > 1e-3).float().mean() < 0.01
    odd = TransformerStack(num_layers=1, d_model=96, num_heads=3, ffn_dim=FFN).eval()  # head size 32: not attended here
    apply_precision(odd, "fp32")
    assert not FusedDecoder.supports(odd, x[:, :1, :96], odd.new_cache(3, 4, dtype=torch.quint4x2, device=torch.device("cpu")))


def test_a_sequence_alone_matches_it_in_a_batch() -> None:
    model = packed_stack()
    x = torch.randn(6, PROMPT + STEPS, WIDTH, generator=torch.Generator().manual_seed(2))
    batched, _ = decode(model, x, fused=True, cache_dtype=torch.float32)
    for row in (0, 5):
        alone, _ = decode(model, x[row : row + 1], fused=True, cache_dtype=torch.float32)
        # the prefill (oneDNN, batch-dependent blocking) may differ in the last bit; start from equal caches
        assert torch.allclose(alone, batched[row : row + 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [7, 8, 9])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_equal_caches_give_bit_identical_rows(batch: int, precision: str) -> None:
    """Every row is summed in the same order whatever the batch, so a step's result for a
    sequence does not depend on the other sequences decoded with it (7-8 rows: chunked, two half
    passes over the columns, inputs transposed; 9 rows: chunked, passes of 6 and 3 rows; alone:
    one pass)."""
    model = packed_stack(precision=precision)
    x = torch.randn(batch, 1, WIDTH, generator=torch.Generator().manual_seed(3))
    batched_cache = model.new_cache(batch, 4, dtype=torch.float32, device=torch.device("cpu"))
    batched_cache.keys.normal_(generator=torch.Generator().manual_seed(4))
    batched_cache.values.normal_(generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        batched = FusedDecoder(model)(x, batched_cache, 3)
        for row in range(batch):
            cache = model.new_cache(1, 4, dtype=torch.float32, device=torch.device("cpu"))
            cache.keys.copy_(batched_cache.keys[:, row : row + 1])
            cache.values.copy_(batched_cache.values[:, row : row + 1])
            assert torch.equal(FusedDecoder(model)(x[row : row + 1], cache, 3), batched[row : row + 1])


@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.int8])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_a_step_for_some_rows_equals_the_full_step_and_leaves_the_rest(cache_dtype: torch.dtype, precision: str) -> None:
    """``rows``: only the named sequences of the cache take the step (ended ones of a batch):
    their outputs and cache entries are those of the step for all, bit for bit (per-row sums);
    the others' outputs are zeros and their cache entries stay as they were."""
    model = packed_stack(precision=precision)
    batch, position = 8, 3
    x = torch.randn(batch, 1, WIDTH, generator=torch.Generator().manual_seed(6))
    full_cache = model.new_cache(batch, 5, dtype=cache_dtype, device=torch.device("cpu"))
    full_cache.key_valid[:, :2] = torch.rand(batch, 2, generator=torch.Generator().manual_seed(7)) > 0.3
    full_cache.key_valid[:, 2:] = True
    full_cache.has_padding = True
    for tensor in (full_cache.keys, full_cache.values):
        tensor.copy_(torch.randint(-50, 50, tensor.shape, generator=torch.Generator().manual_seed(8)).to(tensor.dtype))
    part_cache = model.new_cache(batch, 5, dtype=cache_dtype, device=torch.device("cpu"))
    for name in ("keys", "values", "key_scales", "value_scales", "key_valid"):
        if getattr(full_cache, name) is not None:
            getattr(part_cache, name).copy_(getattr(full_cache, name))
    part_cache.has_padding = True
    before = part_cache.keys.clone()
    rows = torch.tensor([0, 2, 3, 7])
    skipped = torch.tensor([1, 4, 5, 6])
    with torch.inference_mode():
        full = FusedDecoder(model)(x, full_cache, position)
        part = FusedDecoder(model)(x, part_cache, position, rows)
    assert torch.equal(part[rows], full[rows]) and torch.equal(part[skipped], torch.zeros(4, 1, WIDTH))
    assert torch.equal(part_cache.keys[:, rows], full_cache.keys[:, rows])
    assert torch.equal(part_cache.values[:, rows], full_cache.values[:, rows])
    assert torch.equal(part_cache.keys[:, skipped], before[:, skipped]) and part_cache.length == position + 1
    if cache_dtype == torch.int8:
        assert torch.equal(part_cache.key_scales[:, rows], full_cache.key_scales[:, rows])


def test_rows_must_name_increasing_sequences_of_the_cache() -> None:
    model = packed_stack()
    cache = model.new_cache(4, 3, dtype=torch.float32, device=torch.device("cpu"))
    runner = FusedDecoder(model)
    x = torch.randn(4, 1, WIDTH)
    with torch.inference_mode():
        for bad in ([2, 1], [1, 1]):
            with pytest.raises(RuntimeError, match="increasing sequence indices"):
                runner(x, cache, 1, torch.tensor(bad))
        with pytest.raises(RuntimeError, match="increasing sequence indices"):
            runner._kernel.fused_decode_step(torch.zeros(2, WIDTH), torch.zeros(2, WIDTH), runner._params, runner._eps,
                                             runner._tanh, cache.keys, cache.values, None, None, None, 1, torch.tensor([0, 4]))
        with pytest.raises(RuntimeError, match="pass rows"):
            runner._kernel.fused_decode_step(torch.zeros(2, WIDTH), torch.zeros(2, WIDTH), runner._params, runner._eps,
                                             runner._tanh, cache.keys, cache.values, None, None, None, 1, None)


def test_decode_step_takes_the_fused_runner_for_packed_fp32_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    model = packed_stack()
    assert all(isinstance(layer.attention.qkv, PackedLinear) and stream_weight(layer.attention.qkv) is not None
               for layer in model.layers)
    cache = model.new_cache(2, 3, dtype=torch.float32, device=torch.device("cpu"))
    with torch.inference_mode():
        fused = model.decode_step(torch.ones(2, 1, WIDTH), cache, 0)
        assert isinstance(cache.step_runner, FusedDecoder)
        monkeypatch.setenv("SPEECHKIT_FUSED_DECODE", "0")
        cache = model.new_cache(2, 3, dtype=torch.float32, device=torch.device("cpu"))
        lean = model.decode_step(torch.ones(2, 1, WIDTH), cache, 0)
        assert isinstance(cache.step_runner, LeanDecoder)
    assert torch.allclose(fused, lean, atol=1e-5, rtol=0)


def test_bf16_keeps_one_bf16_stream_copy_and_takes_the_fused_runner() -> None:
    model = packed_stack(precision="bf16")
    linears = [module for module in model.modules() if isinstance(module, PackedLinear)]
    assert linears and all(module.weight is None and stream_weight(module).dtype == torch.bfloat16 for module in linears)
    cache = model.new_cache(2, 3, dtype=torch.float32, device=torch.device("cpu"))
    with torch.inference_mode():
        model.decode_step(torch.ones(2, 1, WIDTH), cache, 0)
    assert isinstance(cache.step_runner, FusedDecoder)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_the_reduced_precision_step_stays_close_to_fp32(precision: str) -> None:
    """bfloat16 weights and inputs (8 significant bits) with float32 sums, or int8 weights and
    uint8 inputs with exact sums: outputs within a few per cent of the activations' scale of the
    fp32 step's."""
    x = torch.randn(3, PROMPT + STEPS, WIDTH, generator=torch.Generator().manual_seed(6))
    fp32, _ = decode(packed_stack(), x, fused=True, cache_dtype=torch.float32)
    reduced, _ = decode(packed_stack(precision=precision), x, fused=True, cache_dtype=torch.float32)
    error = (reduced - fp32).abs().max() / fp32.std()
    assert 0 < error < 0.1


def test_int8_keeps_one_int8_stream_copy_and_takes_the_fused_runner() -> None:
    model = packed_stack(precision="int8")
    linears = [module for module in model.modules() if isinstance(module, PackedLinear)]
    assert linears and all(module.weight is None and stream_weight(module).dtype == torch.int8 for module in linears)
    assert all(module.stream_terms.shape == (3, module.out_features) for module in linears)
    cache = model.new_cache(2, 3, dtype=torch.float32, device=torch.device("cpu"))
    with torch.inference_mode():
        model.decode_step(torch.ones(2, 1, WIDTH), cache, 0)
    assert isinstance(cache.step_runner, FusedDecoder)


def test_int8_stream_blocks_hold_quantised_quadruples_and_their_terms() -> None:
    weight, bias = torch.randn(70, 6), torch.randn(70)
    weight[5] = 0.0  # a row of zeros: scale 1, all zeros
    blocks, terms = quantize_stream(weight, bias)
    scale = weight.abs().amax(dim=1) / 127
    scale[5] = 1.0
    quantized = torch.round(weight / scale[:, None]).to(torch.int8)
    assert blocks.shape == (2, 2, 64, 4) and blocks.dtype == torch.int8 and blocks.is_contiguous()
    assert torch.equal(blocks[1, 0, 3], quantized[67, :4]) and torch.equal(blocks[0, 1, 10, :2], quantized[10, 4:])
    assert torch.equal(blocks[:, 1, :, 2:], torch.zeros(2, 64, 2, dtype=torch.int8))  # inputs 6-7 of 6: padding
    assert quantized.abs().max() == 127 and torch.equal(unpack_stream(blocks, 6)[:70], quantized.long())
    assert torch.equal(terms[0], bias) and torch.equal(terms[1], scale)
    assert torch.equal(terms[2], quantized.sum(dim=1).float())
    with pytest.raises(ValueError, match="int8 weight"):
        pack_stream(weight, torch.int8)


def test_inputs_are_quantised_per_row_with_a_zero_point() -> None:
    x = torch.tensor([[-1.0, 0.5, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.25, 1.0, 0.5, 0.75]])
    values, scale, zero = quantize_inputs(x)
    assert values.min() >= 0 and values.max() <= 255 and values.dtype == torch.long
    assert torch.equal(values[0], torch.tensor([0, 127, 255, 85])) and int(zero[0]) == 85  # 0.5 / (3 / 255) = 42.5 -> 42: even
    assert torch.equal(values[1], torch.zeros(4, dtype=torch.long)) and float(scale[1]) == 1.0  # all zeros
    assert int(zero[2]) == 0 and int(values[2, 1]) == 255  # no negatives: the whole range above zero
    assert torch.allclose(scale[:, None] * (values - zero[:, None]), x, atol=float(scale.max()) / 2)


@pytest.mark.parametrize("rows", [1, 3, 7, 8, 150])
def test_int8_stream_linear_is_its_integer_arithmetic(rows: int) -> None:
    """The int8 kernel equals the torch statement of its arithmetic (inputs quantised per row,
    exact integer sums, then the scales) exactly, and an fp32 layer within ~1 %."""
    generator = torch.Generator().manual_seed(rows)
    weight, bias, x = torch.randn(200, 301, generator=generator), torch.randn(200, generator=generator), torch.randn(2, rows, 301, generator=generator)
    blocks, terms = quantize_stream(weight, bias)
    with torch.inference_mode():
        compiled = stream_linear(x, blocks, terms)
    fallback = stream_linear(x.requires_grad_(), blocks, terms).detach()  # autograd: the torch path
    assert compiled.shape == (2, rows, 200) and torch.equal(compiled, fallback)
    expected = torch.nn.functional.linear(x.detach(), weight, bias)
    assert float((compiled - expected).abs().max() / expected.abs().max()) < 0.02


def test_opting_out_keeps_no_stream_copy() -> None:
    for model in (packed_stack(fused_step=False), packed_stack(fused_step=False, precision="bf16"),
                  packed_stack(fused_step=False, precision="int8")):
        assert all(stream_weight(module) is None for module in model.modules())
        cache = model.new_cache(1, 2, dtype=torch.float32, device=torch.device("cpu"))
        with torch.inference_mode():
            model.decode_step(torch.ones(1, 1, model.d_model), cache, 0)
        assert isinstance(cache.step_runner, LeanDecoder)


def test_level_conditioned_stacks_keep_no_stream_copy() -> None:
    model = apply_precision(TransformerStack(num_layers=1, d_model=32, num_heads=2, ffn_dim=64, num_conditions=3).eval())
    assert all(stream_weight(module) is None for module in model.modules())


def test_overflowing_the_cache_is_an_error() -> None:
    model = packed_stack()
    cache = model.new_cache(1, 2, dtype=torch.float32, device=torch.device("cpu"))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="KV cache overflow"):
        FusedDecoder(model)(torch.ones(1, 1, WIDTH), cache, 2)


def test_without_the_compiled_kernel_the_lean_runner_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import speechkit.nn.fused_decode as fused_decode

    model = packed_stack()
    monkeypatch.setattr(fused_decode, "compiled_kernels", lambda: None)
    cache = model.new_cache(1, 2, dtype=torch.float32, device=torch.device("cpu"))
    assert not FusedDecoder.supports(model, torch.ones(1, 1, WIDTH), cache)
    with torch.inference_mode():
        model.decode_step(torch.ones(1, 1, WIDTH), cache, 0)
    assert isinstance(cache.step_runner, LeanDecoder)


@pytest.mark.parametrize("rows", [1, 3, 7, 8, 150])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stream_linear_equals_a_linear_layer(rows: int, dtype: torch.dtype) -> None:
    """The layer-by-layer path (prefill) of a stream-block layer: the compiled kernel and the torch
    fallback both give F.linear's result (bf16: of the weights and inputs rounded to bfloat16), for
    any number of rows, widths off the 64-output blocks and an odd number of inputs."""
    generator = torch.Generator().manual_seed(rows)
    weight, bias, x = torch.randn(200, 301, generator=generator), torch.randn(200, generator=generator), torch.randn(2, rows, 301, generator=generator)
    expected = torch.nn.functional.linear(x.to(dtype).float(), weight.to(dtype).float(), bias)
    with torch.inference_mode():
        compiled = stream_linear(x, pack_stream(weight, dtype), bias)
    fallback = stream_linear(x.requires_grad_(), pack_stream(weight, dtype), bias)  # autograd: the torch path
    for got in (compiled, fallback):
        assert got.shape == (2, rows, 200) and got.dtype == torch.float32
        assert torch.allclose(got, expected, atol=1e-4, rtol=0)


def test_stream_layers_keep_one_copy_of_their_weights() -> None:
    linear = nn.Linear(96, 200, bias=False)
    packed = PackedLinear(linear, stream=True)
    assert packed.weight is None and packed.stream_weight is not None and packed.bias is not None
    with torch.inference_mode():
        x = torch.randn(4, 96)
        assert torch.allclose(packed(x), linear(x), atol=1e-5, rtol=0)
        assert torch.allclose(packed.direct_forward()(x), linear(x), atol=1e-5, rtol=0)


def test_switching_the_fused_step_off_keeps_the_onednn_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEECHKIT_FUSED_DECODE", "0")
    model = packed_stack()
    assert all(stream_weight(module) is None for module in model.modules())


@pytest.mark.skipif(not decode_kernel_available(), reason="the compiled kernels cannot be built here")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
def test_many_rows_over_long_inputs_give_each_rows_own_result(dtype: torch.dtype) -> None:
    """More than 8 rows take each block in chunks of 1024 elements (256 KB of fp32 weights); a row's
    outputs are still one chain of multiply-adds in input order: the same bits as the row alone."""
    generator = torch.Generator().manual_seed(5)
    inputs = 4 * 1024 + 300 if dtype == torch.int8 else 2 * 1024 + 300  # 3 / 2-3 chunks of elements
    weight, bias = torch.randn(70, inputs, generator=generator) / 30, torch.randn(70, generator=generator)
    x = torch.randn(23, inputs, generator=generator)
    blocks, terms = quantize_stream(weight, bias) if dtype == torch.int8 else (pack_stream(weight, dtype), bias)
    with torch.inference_mode():
        together = stream_linear(x, blocks, terms)
        alone = torch.cat([stream_linear(x[row : row + 1], blocks, terms) for row in range(23)])
    assert torch.equal(together, alone)
    expected = torch.nn.functional.linear(x, weight, bias)
    assert float((together - expected).abs().max() / expected.abs().max()) < 0.02
