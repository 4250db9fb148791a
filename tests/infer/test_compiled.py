"""``apply_precision(..., compile=True)``: the NAR's stacks through torch.compile, same results,
AR decoders untouched, clear errors, and an eager fallback where compiling fails."""
from __future__ import annotations

import logging
from typing import Any, Callable

import pytest
import torch
from torch import nn

from speechkit.errors import ConfigError
from speechkit.infer.compiled import CompiledForward, compile_module, is_compiled
from speechkit.infer.precision import PackedLinear, apply_precision, compile_targets
from speechkit.nn.transformer import TransformerStack
from speechkit.registry import build

CONTEXT = {"num_phones": 20, "codebook_size": 16, "num_languages": 3}
TINY = {"d_model": 32, "num_heads": 2, "num_layers": 2, "ffn_dim": 64, "dropout": 0.0}


def tiny_nar(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build("nar_lm", {"name": "valle_nar", **TINY}, **CONTEXT, num_quantizers=3).eval()


def nar_args(batch: int = 2, frames: int = 8) -> tuple[torch.Tensor, ...]:
    """valle_nar.generate_batch inputs: phones, lens, langs, prompt codes, prompt lens, level 1, lens."""
    generator = torch.Generator().manual_seed(3)
    phone_lens = torch.tensor([5, 4, 3][:batch])
    code_lens = torch.tensor([frames, frames - 2, frames - 3][:batch])
    return (torch.randint(1, 20, (batch, 5), generator=generator), phone_lens, torch.zeros(batch, 5, dtype=torch.long),
            torch.randint(0, 16, (batch, 3, 6), generator=generator), torch.tensor([6, 4, 5][:batch]),
            torch.randint(0, 16, (batch, frames), generator=generator), code_lens)


def encoder_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    condition = torch.zeros(x.shape[0], dtype=torch.long)
    with torch.inference_mode():
        return model.encoder(x, None, condition=condition)


def test_compiled_nar_equals_eager_over_shapes() -> None:
    """Real torch.compile (Inductor): the compiled stack gives the eager results, for two batch
    sizes and lengths (dynamic shapes), and generation gives the same codes."""
    eager = apply_precision(tiny_nar(), "fp32")
    compiled = apply_precision(tiny_nar(), "fp32", compile=True)
    assert is_compiled(compiled.encoder) and not is_compiled(eager.encoder)
    for batch, length in ((2, 11), (3, 17)):
        x = torch.randn(batch, length, 32, generator=torch.Generator().manual_seed(batch))
        torch.testing.assert_close(encoder_outputs(compiled, x), encoder_outputs(eager, x), rtol=1e-4, atol=1e-5)
    forward = compiled.encoder.forward
    assert isinstance(forward, CompiledForward) and forward.failed is None  # it really ran compiled
    with torch.inference_mode():
        assert torch.equal(compiled.generate_batch(*nar_args()), eager.generate_batch(*nar_args()))
    assert set(compiled.encoder.state_dict()) == set(tiny_nar().encoder.state_dict())  # same keys


def recording_compiler(calls: list[dict[str, Any]]) -> Callable[..., Any]:
    """A stand-in for torch.compile that records its options and runs the function eagerly."""
    def compiler(function: Callable[..., Any], **options: Any) -> Callable[..., Any]:
        calls.append(options)
        def run(*args: Any, **kwargs: Any) -> Any:
            calls.append({"ran": True})
            return function(*args, **kwargs)
        return run
    return compiler


def test_compile_options_and_inference_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(torch, "compile", recording_compiler(calls))
    model = apply_precision(tiny_nar(), "fp32", compile=True)
    assert calls == [{"dynamic": True, "options": {"freezing": True}}]
    x = torch.randn(1, 4, 32)
    encoder_outputs(model, x)
    assert calls[-1] == {"ran": True}
    calls.clear()
    model.encoder(x, None, condition=torch.zeros(1, dtype=torch.long))  # autograd on: the eager forward
    assert calls == []


def test_bf16_compiled_stack_keeps_plain_bf16_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", recording_compiler([]))
    model = apply_precision(tiny_nar(), "bf16", compile=True)
    stack_linears = [m for m in model.encoder.modules() if isinstance(m, PackedLinear)]
    assert stack_linears and all(m.compute_dtype == torch.bfloat16 and not m.packed for m in stack_linears)
    assert not any(type(m) is nn.Linear for m in model.modules())
    codes = model.generate_batch(*nar_args())
    assert codes.shape == (2, 3, 8)


def test_ar_decoders_are_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(torch, "compile", recording_compiler(calls))
    torch.manual_seed(0)
    ar = build("ar_lm", {"name": "valle_ar", **TINY}, **CONTEXT).eval()
    assert compile_targets(ar) == []
    apply_precision(ar, "fp32", compile=True)
    assert calls == [] and not any(is_compiled(m) for m in ar.modules())
    nar = tiny_nar()
    assert compile_targets(nar) == [nar.encoder] and isinstance(nar.encoder, TransformerStack)


def test_int8_with_compile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="compile works with precision fp32 or bf16"):
        apply_precision(tiny_nar(), "int8", compile=True)


def test_a_failed_compile_warns_once_and_runs_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    from torch._dynamo.exc import TorchDynamoException

    attempts = []

    def failing_compiler(function: Callable[..., Any], **options: Any) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            attempts.append(1)
            raise TorchDynamoException("no C++ compiler found")
        return run

    model = tiny_nar()
    reference = encoder_outputs(model, torch.ones(1, 4, 32))
    forward = compile_module(model.encoder, compiler=failing_compiler)
    with caplog.at_level(logging.WARNING, logger="speechkit.infer"):
        first = encoder_outputs(model, torch.ones(1, 4, 32))
        second = encoder_outputs(model, torch.ones(1, 4, 32))
    assert torch.equal(first, reference) and torch.equal(second, reference)
    assert len(attempts) == 1 and forward.failed is not None and "no C++ compiler found" in forward.failed
    assert sum("running it eagerly" in record.message for record in caplog.records) == 1


def test_model_errors_are_not_swallowed() -> None:
    """An error of the model's own code (a wrong width) propagates; compiling stays on."""
    def passthrough(function: Callable[..., Any], **options: Any) -> Callable[..., Any]:
        return function

    model = tiny_nar()
    forward = compile_module(model.encoder, compiler=passthrough)
    with pytest.raises(RuntimeError):
        encoder_outputs(model, torch.ones(1, 4, 31))
    assert forward.failed is None
