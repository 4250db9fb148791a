"""``torch.compile`` for the Transformer stacks of the non-autoregressive models (the NAR).

A NAR pass is a few large matrix products over hundreds of positions, with layer norms, GELUs,
softmaxes, residual additions and casts between them. Inductor fuses those elementwise
operations into a few loops. With "freezing" (weights taken as constants of the graph) it also
pre-packs the weights for oneDNN itself. docs/performance.md measures what this gives.

* Only the stacks of models without step-by-step decoding are compiled. The AR decoders
  (modules with ``decode_step``) keep their own paths: the fused step
  (:mod:`speechkit.nn.fused_decode`) or the lean step over oneDNN-packed weights. Their
  per-step work already runs in compiled code or a handful of operator calls.
* The compiled forward is used for inference only: with autograd on, the eager one runs.
* Shapes are dynamic (one graph serves every batch and length). The first call compiles
  (tens of seconds at paper size) and later calls reuse the graph.
* Where compiling fails (no C++ compiler, an operator Inductor cannot lower), a warning says so
  once and the stack runs eagerly from then on. The result is the same, only slower. An error
  raised by the model's own code is raised as usual.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import nn

from speechkit.errors import describe_error

log = logging.getLogger("speechkit.infer")


def _compile_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "torch.compile could not build this", not "the model failed"."""
    errors: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import TorchDynamoException

        errors.append(TorchDynamoException)
    except ImportError:  # pragma: no cover - every supported torch has it
        pass
    try:
        from torch._inductor.exc import InductorError

        errors.append(InductorError)
    except ImportError:  # pragma: no cover - older torch
        pass
    return tuple(errors)


class CompiledForward:
    """A module's ``forward`` through ``torch.compile`` (dynamic shapes, Inductor with freezing),
    with a fallback to the eager ``forward`` (see the module docstring).

    Installed as the module's instance attribute ``forward`` by :func:`compile_module`, so
    ``module(...)`` runs it while ``state_dict`` and the module's type stay unchanged.

    Attributes:
        eager: the module's own forward; compiled: its compiled version; failed: the reason
            compiling failed (None while it works).
    """

    def __init__(self, module: nn.Module, *, compiler: Callable[..., Any] | None = None) -> None:
        self.eager = module.forward
        compile_fn = compiler or torch.compile
        self.compiled = compile_fn(self.eager, dynamic=True, options={"freezing": True})
        self.name = type(module).__name__
        self.failed: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is None and not torch.is_grad_enabled():
            try:
                return self.compiled(*args, **kwargs)
            except _compile_errors() as error:
                self.failed = describe_error(error)
                log.warning("torch.compile of %s failed (%s); running it eagerly from now on. Install a C++ "
                            "compiler (g++) for Inductor on CPU, or drop the compile option.", self.name, self.failed)
        return self.eager(*args, **kwargs)


def compile_module(module: nn.Module, *, compiler: Callable[..., Any] | None = None) -> CompiledForward:
    """Make ``module(...)`` run a compiled forward for inference (in place); returns it.

    ``compiler`` replaces ``torch.compile`` (same signature), for tests.
    """
    forward = CompiledForward(module, compiler=compiler)
    module.forward = forward  # type: ignore[method-assign]
    return forward


def is_compiled(module: nn.Module) -> bool:
    """Whether :func:`compile_module` was applied to ``module``."""
    return isinstance(module.__dict__.get("forward"), CompiledForward)
