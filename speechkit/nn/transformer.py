"""Pre-LN Transformer layers, optionally with a layer norm per condition (the NAR's level)."""
from __future__ import annotations

import logging

import torch
from torch import nn

from speechkit.errors import describe_error
from speechkit.nn.attention import KVCache, MultiHeadAttention
from speechkit.nn.fused_decode import FusedDecoder
from speechkit.nn.graph_decode import GraphDecoder
from speechkit.nn.lean_decode import LeanDecoder

log = logging.getLogger(__name__)


class LevelLayerNorm(nn.Module):
    """A separate LayerNorm per condition (VALL-E X: one per generated codec level).

    Implemented as a shared normalisation without affine parameters followed by a per-condition
    gain and bias looked up in two embedding tables (``num_conditions x d``), which is exactly a
    ModuleList of LayerNorms but batched: row ``c`` of the tables is the affine of LayerNorm ``c``.
    """

    def __init__(self, d_model: int, num_conditions: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=eps, elementwise_affine=False)
        self.gain = nn.Embedding(num_conditions, d_model)
        self.bias = nn.Embedding(num_conditions, d_model)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """x: FloatTensor[B, T, D], condition: LongTensor[B] -> FloatTensor[B, T, D]."""
        return self.norm(x) * self.gain(condition).unsqueeze(1) + self.bias(condition).unsqueeze(1)


class _Norm(nn.Module):
    """A plain LayerNorm, or a :class:`LevelLayerNorm` when ``num_conditions > 0``."""

    def __init__(self, d_model: int, num_conditions: int) -> None:
        super().__init__()
        self.conditional = num_conditions > 0
        self.norm = LevelLayerNorm(d_model, num_conditions) if self.conditional else nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        if self.conditional:
            if condition is None:
                raise ValueError("this Transformer is level-conditioned: pass condition LongTensor[B]")
            return self.norm(x, condition)
        return self.norm(x)


class TransformerLayer(nn.Module):
    """Pre-LN layer: ``x + attn(norm(x))`` then ``x + ffn(norm(x))`` (GELU feed-forward).

    Args:
        d_model, num_heads, ffn_dim, dropout: sizes and residual/attention dropout.
        num_conditions: if > 0, both norms are :class:`LevelLayerNorm` over that many conditions.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, *, dropout: float = 0.0, num_conditions: int = 0) -> None:
        super().__init__()
        self.attention_norm = _Norm(d_model, num_conditions)
        self.attention = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ffn_norm = _Norm(d_model, num_conditions)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        condition: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        start: int = 0,
    ) -> torch.Tensor:
        """x: FloatTensor[B, N, D] -> FloatTensor[B, N, D]; see :meth:`MultiHeadAttention.forward`."""
        attended = self.attention(self.attention_norm(x, condition), mask, cache=cache, layer=layer, start=start)
        x = x + self.dropout(attended)
        return x + self.dropout(self.ffn(self.ffn_norm(x, condition)))


class TransformerStack(nn.Module):
    """``num_layers`` :class:`TransformerLayer` followed by a final norm (pre-LN convention)."""

    def __init__(
        self,
        *,
        num_layers: int,
        d_model: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        num_conditions: int = 0,
    ) -> None:
        super().__init__()
        self.d_model, self.num_heads = d_model, num_heads
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, num_heads, ffn_dim, dropout=dropout, num_conditions=num_conditions)
            for _ in range(num_layers)
        )
        self.final_norm = _Norm(d_model, num_conditions)

    def new_cache(self, batch_size: int, max_length: int, *, dtype: torch.dtype, device: torch.device) -> KVCache:
        """A zeroed :class:`KVCache` sized for this stack."""
        return KVCache(
            num_layers=len(self.layers),
            batch_size=batch_size,
            num_heads=self.num_heads,
            head_dim=self.d_model // self.num_heads,
            max_length=max_length,
            dtype=dtype,
            device=device,
        )

    def decode_step(self, x: torch.Tensor, cache: KVCache, start: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """One decoding step: x FloatTensor[B, 1, D] at cache position ``start`` -> FloatTensor[B, 1, D].

        ``rows`` (LongTensor[R], increasing; None: all) names the sequences that still need the
        step, e.g. those of a batch that have not ended: a runner may skip the others (the fused
        step does: their outputs are then zeros and their cache is not written); their outputs
        are to be ignored.

        The same result as ``forward(x, cache.step_mask(start + 1), cache=cache, start=start)``
        (up to float rounding). In eval mode an unconditioned stack runs it through a runner
        planned once per generation and kept on ``cache``: a :class:`FusedDecoder` (the whole step
        in one compiled call) on CPU with stream weights (see
        :func:`speechkit.infer.precision.apply_precision`), on CUDA a :class:`GraphDecoder` (the
        step recorded once as a CUDA graph and replayed), else a :class:`LeanDecoder` (the
        layers' weights bound once; far fewer Python calls per step).
        """
        runner = cache.step_runner
        if self.training or x.shape[1] != 1 or torch.is_grad_enabled():
            runner = None
        elif not isinstance(runner, (FusedDecoder, GraphDecoder, LeanDecoder)) or runner.stack is not self:
            runner = cache.step_runner = self._step_runner(x, cache)
        if runner is None:
            return self.forward(x, cache.step_mask(start + 1), cache=cache, start=start)
        if isinstance(runner, FusedDecoder):
            return runner(x, cache, start, rows)
        return runner(x, cache, start)

    def _step_runner(self, x: torch.Tensor, cache: KVCache) -> FusedDecoder | GraphDecoder | LeanDecoder | None:
        """The quickest runner that supports this stack and step (None: ``forward``)."""
        if FusedDecoder.enabled() and FusedDecoder.supports(self, x, cache):
            return FusedDecoder(self)
        if GraphDecoder.enabled() and LeanDecoder.enabled() and GraphDecoder.supports(self, x, cache):
            try:
                return GraphDecoder(self, x, cache)
            except RuntimeError as error:  # a torch or driver without graph capture of some step op
                log.warning("CUDA graph capture of the decoding step failed (%s); stepping layer by layer. "
                            "Set SPEECHKIT_CUDA_GRAPHS=0 to skip the attempt.", describe_error(error))
        if LeanDecoder.enabled() and LeanDecoder.supports(self):
            return LeanDecoder(self)
        return None

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        condition: torch.Tensor | None = None,
        cache: KVCache | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """x: FloatTensor[B, N, D] -> FloatTensor[B, N, D] (normed). With ``cache``, the N new
        positions are written at ``start`` and ``cache.length`` becomes ``start + N``."""
        for index, layer in enumerate(self.layers):
            x = layer(x, mask, condition=condition, cache=cache, layer=index, start=start)
        if cache is not None:
            cache.length = start + x.shape[1]
        return self.final_norm(x, condition)
