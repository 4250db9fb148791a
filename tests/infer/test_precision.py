"""Inference precision paths: packed fp32 equals the reference, bf16/int8 stay close, errors are clear."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from speechkit.errors import ConfigError
from speechkit.infer.precision import PackedLinear, apply_precision, int8_streams_vectorized, onednn_packing_available
from speechkit.nn.decode_kernel import decode_kernel_available
from speechkit.nn.fused_decode import FusedDecoder, stream_weight
from speechkit.registry import build

CONTEXT = {"num_phones": 20, "codebook_size": 16, "num_languages": 3}
TINY = {"d_model": 32, "num_heads": 2, "num_layers": 2, "ffn_dim": 64, "dropout": 0.0}


def tiny(name: str = "valle_ar", kind: str = "ar_lm", **context: int) -> nn.Module:
    torch.manual_seed(0)
    return build(kind, {"name": name, **TINY}, **CONTEXT, **context).eval()


def prompts(device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    phones = torch.randint(1, 20, (2, 7), generator=generator)
    made = (phones, torch.tensor([7, 5]), torch.randint(0, 3, (2, 7), generator=generator),
            torch.randint(0, 16, (2, 6), generator=generator), torch.tensor([6, 3]), torch.tensor([0, 1]))
    return tuple(tensor.to(device) for tensor in made)


def teacher_forced_logits(model: nn.Module, steps: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits FloatTensor[steps, B, K+1] of a fixed token sequence (no feedback of the argmax),
    on the model's device."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 16, (steps, 2, 1), generator=generator).to(device)
    with torch.inference_mode():
        state, logits = model.prefill(*prompts(device), max_steps=steps)
        rows = [logits]
        for step in range(steps - 1):
            rows.append(model.decode_step(state, tokens[step]))
    stacked = torch.stack(rows)[:, :, 0]
    return stacked, stacked.argmax(-1)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_precision_paths_match_fp32(precision: str, device: torch.device) -> None:
    reference, reference_tokens = teacher_forced_logits(tiny().to(device))
    if precision == "int8" and device.type != "cpu":
        with pytest.raises(ConfigError, match="CPU only"):
            apply_precision(tiny().to(device), precision)
        return
    model = apply_precision(tiny().to(device), precision)
    logits, tokens = teacher_forced_logits(model)
    assert logits.dtype == torch.float32
    tolerance = {"fp32": 1e-4, "bf16": 5e-2, "int8": 1e-1}[precision]
    scale = reference.abs().max()
    assert (logits - reference).abs().max() <= tolerance * scale
    agreement = (tokens == reference_tokens).float().mean()
    assert agreement == 1.0 if precision == "fp32" else agreement >= 0.8


@pytest.mark.parametrize("kv_cache", ["bf16", "int8", "int4"])
@pytest.mark.parametrize("name", ["valle_ar", "aligned_ar"])
def test_reduced_kv_cache_is_allocated_and_stays_close(name: str, kv_cache: str, device: torch.device) -> None:
    reference, reference_tokens = teacher_forced_logits(tiny(name).to(device)) if name == "valle_ar" else (None, None)
    model = apply_precision(tiny(name).to(device), "fp32", kv_cache=kv_cache)
    with torch.inference_mode():
        state, _ = model.prefill(*prompts(device), max_steps=4)
    dtype = {"bf16": torch.bfloat16, "int8": torch.int8, "int4": torch.uint8}[kv_cache]  # int4: packed pairs
    assert state.cache.keys.dtype == dtype and state.cache.values.dtype == dtype
    assert (state.cache.key_scales is not None) == (kv_cache in ("int8", "int4"))
    if reference is not None:
        logits, tokens = teacher_forced_logits(model)
        assert (logits - reference).abs().max() <= 5e-2 * reference.abs().max()
        assert (tokens == reference_tokens).float().mean() >= 0.8
    generated = model.generate_batch(*prompts(device), temperature=0.0)  # decoding reads the reduced cache
    assert len(generated.codes) == 2 and all(reason in ("eos", "max_length", "loop") for reason in generated.stop_reasons)
    with pytest.raises(ConfigError, match="KV-cache precision"):
        apply_precision(tiny(name), "fp32", kv_cache="int2")


def test_packed_fp32_generation_is_greedy_identical_and_batch_independent(device: torch.device) -> None:
    reference = tiny().to(device)
    model = apply_precision(tiny().to(device), "fp32")
    args = prompts(device)
    expected = reference.generate_batch(*args, temperature=0.0)
    batched = model.generate_batch(*args, temperature=0.0)
    for row in range(2):
        single = model.generate_batch(*(tensor[row : row + 1] for tensor in args), temperature=0.0)
        assert torch.equal(single.codes[0], batched.codes[row])
        assert torch.equal(expected.codes[row], batched.codes[row])


@pytest.mark.skipif(not decode_kernel_available(), reason="the compiled decoding kernels cannot be built here")
@pytest.mark.parametrize("name", ["valle_ar", "aligned_ar"])
def test_ended_sequences_skip_their_steps_and_the_rest_is_unchanged(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of a batch that end early leave the fused step (``rows``); the others still generate
    what they generate alone (greedy)."""
    raw = tiny(name)
    if name == "valle_ar":  # no early end tokens: the length guard ends the rows
        with torch.no_grad():
            raw.head.bias[raw.eos_id] = -1e4
    model = apply_precision(raw, "fp32")
    model.config.max_frames_per_phone, model.config.max_frames_margin = 2.0, 0  # rows end by 2 x their phones
    seen: list[list[int] | None] = []
    call = FusedDecoder.__call__

    def spy(self: FusedDecoder, x: torch.Tensor, cache: object, start: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        seen.append(None if rows is None else rows.tolist())
        return call(self, x, cache, start, rows)

    monkeypatch.setattr(FusedDecoder, "__call__", spy)
    args = prompts()
    batched = model.generate_batch(*args, num_target_phones=torch.tensor([6, 2]), temperature=0.0)
    assert len(batched.codes[1]) < len(batched.codes[0])
    assert seen and seen[0] is None and [0] in seen  # all rows first; only row 0 once row 1 has ended
    for row, count in ((0, 6), (1, 2)):
        alone = model.generate_batch(*(tensor[row : row + 1] for tensor in args), num_target_phones=torch.tensor([count]),
                                     temperature=0.0)
        assert torch.equal(alone.codes[0], batched.codes[row])


def test_layers_are_swapped() -> None:
    model = apply_precision(tiny(), "bf16")
    assert not any(type(module) is nn.Linear for module in model.modules())
    packed = [module for module in model.modules() if isinstance(module, PackedLinear)]
    assert packed and all(module.compute_dtype == torch.bfloat16 for module in packed)
    streamed = [module for module in packed if stream_weight(module) is not None]  # the AR stack: fused steps
    assert all(module.stream_weight.dtype == torch.bfloat16 and module.weight is None for module in streamed)
    assert bool(streamed) == (onednn_packing_available() and FusedDecoder.enabled() and decode_kernel_available())
    assert all(module.packed == onednn_packing_available() for module in packed if module not in streamed)
    quantized = apply_precision(tiny(), "int8")
    assert not any(type(module) is nn.Linear for module in quantized.modules())


def test_int8_streams_the_ar_decoder_and_quantises_the_rest_dynamically(monkeypatch: pytest.MonkeyPatch) -> None:
    """int8 on CPU: the AR decoder's layers and head as int8 stream blocks (fused step) where the
    kernel multiplies int8 with vector instructions; everything through torch.ao otherwise."""
    from speechkit.infer import precision as precision_module

    model = apply_precision(tiny(), "int8")
    streamed = [module for module in model.modules() if stream_weight(module) is not None]
    if FusedDecoder.enabled() and precision_module.int8_streams_vectorized():
        assert streamed and all(module.stream_weight.dtype == torch.int8 for module in streamed)
        assert stream_weight(model.head) is not None
    monkeypatch.setattr(precision_module, "int8_streams_vectorized", lambda: False)
    fallback = apply_precision(tiny(), "int8")
    assert not any(stream_weight(module) is not None for module in fallback.modules())
    assert not any(type(module) in (nn.Linear, PackedLinear) for module in fallback.modules())
    generated = fallback.generate_batch(*prompts(), temperature=0.0)
    assert len(generated.codes) == 2


@pytest.mark.skipif(not decode_kernel_available(), reason="the compiled decoding kernels cannot be built here")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_stream_heads_apply_the_gelu_that_follows_them(precision: str) -> None:
    """aligned_ar's MLP heads: with stream blocks the first layer applies the head's GELU itself
    (the GELU module becomes Identity), and the heads compute what they computed before; the
    decoder stacks keep their GELUs (their steps read them)."""
    from speechkit.infer.precision import fold_activations
    from speechkit.nn.fused_decode import stream_linear

    reference = tiny("aligned_ar")
    model = apply_precision(tiny("aligned_ar"), precision)
    if not FusedDecoder.prepared(model.decoder):
        pytest.skip("no fused step here (packing unavailable or turned off)")
    for head in (model.code_head, model.advance_head):
        assert head[0].activation == "gelu" and type(head[1]) is nn.Identity
    assert all(type(layer.ffn[1]) is nn.GELU for layer in model.decoder.layers)
    assert fold_activations(model) == 0  # nothing left to fold
    x = torch.randn(5, TINY["d_model"], generator=torch.Generator().manual_seed(3))
    tolerance = {"fp32": 1e-5, "bf16": 3e-2, "int8": 5e-2}[precision]
    with torch.inference_mode():
        for ours, theirs in ((model.code_head, reference.code_head), (model.advance_head, reference.advance_head)):
            expected = theirs(x)
            assert (ours(x) - expected).abs().max() <= tolerance * expected.abs().max()
        # the kernel's GELU epilogue against torch's GELU after the same layer (its torch path)
        layer = model.code_head[0]
        plain = stream_linear(x, layer.stream_weight, layer.stream_terms)
        for activation, approximate in (("gelu", "none"), ("gelu_tanh", "tanh")):
            got = stream_linear(x, layer.stream_weight, layer.stream_terms, activation)
            assert torch.allclose(got, torch.nn.functional.gelu(plain, approximate=approximate), atol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        stream_linear(x, layer.stream_weight, layer.stream_terms, "relu")


@pytest.mark.parametrize("name", ["valle_nar", "continuous_nar"])
def test_nar_precision_paths_run(name: str, device: torch.device) -> None:
    model = tiny(name, "nar_lm", num_quantizers=3)
    if name == "continuous_nar":
        model.set_codewords(torch.randn(3, 16, model.config.feature_dim))
    model.to(device)
    generator = torch.Generator().manual_seed(3)
    args = (torch.randint(1, 20, (2, 5), generator=generator), torch.tensor([5, 4]), torch.zeros(2, 5, dtype=torch.long),
            torch.randint(0, 16, (2, 3, 6), generator=generator), torch.tensor([6, 4]),
            torch.randint(0, 16, (2, 8), generator=generator), torch.tensor([8, 6]))
    args = tuple(tensor.to(device) for tensor in args)
    expected = model.generate_batch(*args)
    assert expected.device.type == device.type
    for precision in ("fp32", "bf16") if device.type != "cpu" else ("fp32", "bf16", "int8"):
        copy = tiny(name, "nar_lm", num_quantizers=3).to(device)
        copy.load_state_dict(model.state_dict())
        codes = apply_precision(copy, precision).generate_batch(*args)
        assert codes.shape == expected.shape
        if precision == "fp32":
            assert torch.equal(codes, expected)


def test_unknown_precision_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fp32, bf16, int8"):
        apply_precision(tiny(), "fp16")


@pytest.mark.skipif(not int8_streams_vectorized(), reason="int8 stream blocks need AVX512-VNNI or -BW and the kernels")
@pytest.mark.parametrize("name", ["valle_nar", "continuous_nar"])
def test_int8_nar_streams_every_linear_layer_and_its_rows_do_not_depend_on_their_batch(name: str) -> None:
    """int8 keeps every linear layer of a NAR as stream blocks (inputs quantised per row), and with
    head size 64 its attention in bf16 products: a sequence's codes are the same alone and batched."""
    torch.manual_seed(0)
    model = build("nar_lm", {"name": name, "d_model": 128, "num_heads": 2, "num_layers": 2, "ffn_dim": 128,
                             "dropout": 0.0}, **CONTEXT, num_quantizers=3).eval()
    if name == "continuous_nar":
        model.set_codewords(torch.randn(3, 16, model.config.feature_dim))
    apply_precision(model, "int8")
    assert not any(type(module) is nn.Linear for module in model.modules())
    streamed = [module for module in model.modules() if isinstance(module, PackedLinear)]
    assert streamed and all(module.stream_weight is not None and module.stream_weight.dtype == torch.int8 for module in streamed)
    # the feed-forward blocks' GELU is applied by their first layer as it writes its outputs
    assert not any(type(module) is nn.GELU for module in model.encoder.modules())
    assert sum(module.activation == "gelu" for module in streamed) >= 2
    generator = torch.Generator().manual_seed(3)
    phones, phone_lens = torch.randint(1, 20, (3, 9), generator=generator), torch.tensor([9, 4, 7])
    langs = torch.zeros(3, 9, dtype=torch.long)
    prompt, prompt_lens = torch.randint(0, 16, (3, 3, 10), generator=generator), torch.tensor([10, 6, 8])
    level1, level1_lens = torch.randint(0, 16, (3, 12), generator=generator), torch.tensor([12, 5, 9])
    with torch.inference_mode():
        batched = model.generate_batch(phones, phone_lens, langs, prompt, prompt_lens, level1, level1_lens)
        for row in range(3):
            p, q, t = int(phone_lens[row]), int(prompt_lens[row]), int(level1_lens[row])
            alone = model.generate_batch(phones[row : row + 1, :p], phone_lens[row : row + 1], langs[row : row + 1, :p],
                                         prompt[row : row + 1, :, :q], prompt_lens[row : row + 1],
                                         level1[row : row + 1, :t], level1_lens[row : row + 1])
            assert torch.equal(alone[0, :, :t], batched[row, :, :t])


def test_int8_without_the_fused_step_leaves_the_ar_decoder_to_torch_ao() -> None:
    model = apply_precision(tiny(), "int8", fused_step=False)
    stack_layers = [module for module in model.decoder.modules() if not isinstance(module, nn.ModuleList)]
    assert not any(stream_weight(module) is not None for module in stack_layers)
    assert stream_weight(model.head) is not None  # layers outside the stacks stay int8 stream blocks
    assert not any(type(module) is nn.Linear for module in model.modules())


@pytest.mark.skipif(not int8_streams_vectorized(), reason="int8 stream blocks need AVX512-VNNI or -BW and the kernels")
def test_the_fused_steps_stacks_keep_their_gelu() -> None:
    model = apply_precision(tiny(), "int8")
    assert any(type(module) is nn.GELU for module in model.decoder.modules())  # the fused step reads it
    assert FusedDecoder.prepared(model.decoder)
