"""One decoding step of a :class:`~speechkit.nn.transformer.TransformerStack` with little Python.

At batch 1 a paper-size decoding step spends a few ms outside the matrix products and the
attention: module calls (~15 per layer with norms, dropouts and containers), view/permute/unbind
chains and cache bookkeeping, each a few microseconds of interpreter and dispatcher time
(docs/performance.md measured 3.6 ms of a 11.8 ms int8 step). :class:`LeanDecoder` computes the
same step as the stack's ``forward`` with one position per sequence (same operations, same
order, bit-identical results) from a plan of the layers' weights and bound ``forward`` methods
built once, so a step is ~11 tensor operations per layer.

It works with whatever linear layers the stack holds (``nn.Linear``, the pre-packed or
quantised ones of :mod:`speechkit.infer.precision`). A plan binds the layers as they are when it
is built, so it lives as long as one generation: ``TransformerStack.decode_step`` keeps it on the
generation's :class:`~speechkit.nn.attention.KVCache`. Level-conditioned stacks, training mode
and steps of several positions use the stack's ``forward``.
"""
from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.nn.attention import KVCache

Linear = Callable[[torch.Tensor], torch.Tensor]
#: a layer's attention for one new position: (layer, query, keys, values) -> attended
Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class _LayerPlan(NamedTuple):
    """The bound pieces of one pre-LN layer (see ``TransformerLayer``)."""

    attention_norm: tuple[torch.Tensor | None, torch.Tensor | None, float]
    qkv: Linear
    out: Linear
    ffn_norm: tuple[torch.Tensor | None, torch.Tensor | None, float]
    ffn_in: Linear
    activation: str  # GELU's ``approximate``
    ffn_out: Linear


def direct_operator(overload: Any) -> Callable[..., Any]:
    """The C++ callable behind a ``torch.ops`` overload (skips ~10 us of Python checks per call
    that ops taking script objects, like the quantised linear's packed weights, go through);
    the overload itself where torch does not expose it."""
    return getattr(overload, "_op", overload)


def direct_linear(module: nn.Module) -> Linear:
    """The quickest call of a linear layer's forward for 2-D inputs [B, in] -> [B, out].

    A module may offer ``direct_forward()`` (the pre-packed layers of
    :mod:`speechkit.infer.precision` do); torch's dynamically quantised int8 ``Linear`` is called
    through its operator (its ``forward`` adds ~25 us of Python per call, ~1 ms per paper-size
    step); anything else through its ``forward``.
    """
    direct = getattr(module, "direct_forward", None)
    if callable(direct):
        return direct()
    packed = getattr(module, "_packed_params", None)
    if type(module).__module__.startswith("torch.ao.nn.quantized.dynamic") and getattr(packed, "dtype", None) == torch.qint8:
        params = packed._packed_params
        reduce_range = module.version is not None and module.version >= 4  # as its forward decides
        operator = direct_operator(torch.ops.quantized.linear_dynamic.default)
        return lambda x: operator(x, params, reduce_range)
    return module.forward


def norm_parts(norm: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None, float]:
    """An unconditioned layer's norm as (weight, bias, eps) of its ``nn.LayerNorm``."""
    inner = norm.norm  # _Norm wraps an nn.LayerNorm when unconditioned
    return inner.weight, inner.bias, inner.eps


class LeanDecoder:
    """Runs ``stack.forward(x, cache.step_mask(start + 1), cache=cache, start=start)`` for
    x FloatTensor[B, 1, D] with a prebuilt plan (see the module docstring).

    Args:
        stack: the TransformerStack (unconditioned: ``num_conditions == 0``).
    """

    def __init__(self, stack: nn.Module) -> None:
        self.stack = stack
        self._plan = [
            _LayerPlan(
                attention_norm=norm_parts(layer.attention_norm),
                qkv=direct_linear(layer.attention.qkv),
                out=direct_linear(layer.attention.out),
                ffn_norm=norm_parts(layer.ffn_norm),
                ffn_in=direct_linear(layer.ffn[0]),
                activation=layer.ffn[1].approximate,
                ffn_out=direct_linear(layer.ffn[3]),
            )
            for layer in stack.layers
        ]
        self._final = norm_parts(stack.final_norm)

    @staticmethod
    def enabled() -> bool:
        """False with ``SPEECHKIT_LEAN_DECODE=0`` in the environment (every step then runs the
        stack's ``forward``: for A/B measurements and debugging)."""
        return os.environ.get("SPEECHKIT_LEAN_DECODE", "1") != "0"

    @staticmethod
    def supports(stack: nn.Module) -> bool:
        """Whether ``stack`` has the plain pre-LN layout this runner plans (no level conditions,
        GELU feed-forward)."""
        return not stack.final_norm.conditional and all(
            not layer.attention_norm.conditional and isinstance(layer.ffn[1], nn.GELU) for layer in stack.layers
        )

    def __call__(self, x: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """x: FloatTensor[B, 1, D] (embedded new positions) -> FloatTensor[B, 1, D] (normed);
        writes the keys/values at ``start`` and sets ``cache.length = start + 1``."""
        end = start + 1

        def attend(layer: int, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            cache.store_position(layer, keys, values, start)
            return cache.step_attention(layer, query.unsqueeze(2), end)

        hidden = self.run(x, attend)
        cache.length = end
        return hidden

    def run(self, x: torch.Tensor, attend: Attend) -> torch.Tensor:
        """The planned layers and final norm for x FloatTensor[B, 1, D] -> FloatTensor[B, 1, D],
        each layer's attention by ``attend(layer, query, keys, values)`` (the new position's
        FloatTensor[B, H, Dh] each; it stores keys and values and returns FloatTensor[B, H, 1, Dh]).
        :meth:`__call__` attends through the cache at a host position;
        :class:`~speechkit.nn.graph_decode.StaticStepDecoder` at a position on the device."""
        batch, _, width = x.shape
        heads = self.stack.num_heads
        head_dim = width // heads
        shape = (width,)
        hidden = x.reshape(batch, width)
        for index, layer in enumerate(self._plan):
            weight, bias, eps = layer.attention_norm
            qkv = layer.qkv(F.layer_norm(hidden, shape, weight, bias, eps)).view(batch, 3, heads, head_dim)
            attended = attend(index, qkv[:, 0], qkv[:, 1], qkv[:, 2])  # [B, H, 1, Dh]
            hidden = hidden + layer.out(attended.reshape(batch, width))
            weight, bias, eps = layer.ffn_norm
            inner = layer.ffn_in(F.layer_norm(hidden, shape, weight, bias, eps))
            hidden = hidden + layer.ffn_out(F.gelu(inner, approximate=layer.activation))
        weight, bias, eps = self._final
        return F.layer_norm(hidden, shape, weight, bias, eps).view(batch, 1, width)
