"""Multi-head self-attention on ``scaled_dot_product_attention``, with a preallocated KV cache.

Incremental decoding writes each step's keys/values in place into a cache allocated once for the
longest sequence (``copy_`` into a slice), and attends to a view of the filled part: no
``torch.cat`` and no reallocation per step, so a step costs the weights plus attention itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.nn.bf16_attention import bf16_attention
from speechkit.nn.decode_kernel import (
    decode_attention,
    decode_kernel_available,
    dequantize_rows,
    QUANTIZED_KV_BITS,
    quantize_rows,
    store_quantized,
)
from speechkit.nn.huge_pages import huge_page_zeros

__all__ = ["KVCache", "MultiHeadAttention", "decode_step_attention", "quantize_rows", "single_query_attention"]


class KVCache:
    """Keys and values of every layer for a batch, preallocated to ``max_length`` positions.

    Shapes: ``keys``/``values`` [num_layers, B, H, max_length, Dh] in ``dtype`` (float32,
    bfloat16, or int8 with one scale per position and head in ``key_scales``/``value_scales``
    FloatTensor[num_layers, B, H, max_length]); ``dtype=torch.quint4x2`` asks for int4: 4-bit
    levels -7..7 with the same scales, stored two per byte as ByteTensor[num_layers, B, H,
    max_length, Dh / 2] (the layout of :func:`~speechkit.nn.decode_kernel.quantize_rows` with
    bits 4; Dh even). ``length`` is the number of positions written so far (shared by the batch:
    sequences are aligned so that they write at the same index; padding is excluded with
    ``key_valid``, BoolTensor[B, max_length]).
    """

    def __init__(
        self,
        *,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        max_length: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if dtype not in (torch.float32, torch.bfloat16, torch.float16, *QUANTIZED_KV_BITS):
            raise ValueError(f"KV cache dtype must be float32, bfloat16, float16, int8 or quint4x2 (int4), got {dtype}")
        #: bits per quantised element: 8 (int8), 4 (int4 pairs), 0 (a float cache)
        self.bits = QUANTIZED_KV_BITS.get(dtype, 0)
        if self.bits == 4 and head_dim % 2:
            raise ValueError(f"an int4 KV cache needs an even head size, got {head_dim}; use int8")
        shape = (num_layers, batch_size, num_heads, max_length, head_dim)
        stored = shape[:-1] + (head_dim // 2,) if self.bits == 4 else shape
        storage = torch.uint8 if self.bits == 4 else dtype
        self.keys = huge_page_zeros(stored, storage, device)  # every step streams the cache: huge pages on CPU
        self.values = huge_page_zeros(stored, storage, device)
        self.quantized = self.bits > 0
        self.key_scales: torch.Tensor | None = None
        self.value_scales: torch.Tensor | None = None
        if self.quantized:
            self.key_scales = torch.ones(shape[:-1], dtype=torch.float32, device=device)
            self.value_scales = torch.ones(shape[:-1], dtype=torch.float32, device=device)
        self.key_valid = torch.zeros(batch_size, max_length, dtype=torch.bool, device=device)
        self.max_length = max_length
        self.length = 0
        self.has_padding = False
        #: what the model decoding into this cache keeps for its steps (TransformerStack.decode_step)
        self.step_runner: object | None = None

    def store(self, layer: int, keys: torch.Tensor, values: torch.Tensor, start: int) -> int:
        """Store keys/values FloatTensor[B, H, N, Dh] at ``start`` (quantised for an int8 or int4
        cache); return ``start + N``."""
        end = start + keys.shape[2]
        if end > self.max_length:
            raise RuntimeError(f"KV cache overflow: writing up to {end} of {self.max_length} positions")
        if self.quantized:
            keys, key_scales = quantize_rows(keys, self.bits)
            values, value_scales = quantize_rows(values, self.bits)
            self.key_scales[layer, :, :, start:end].copy_(key_scales)  # type: ignore[index]
            self.value_scales[layer, :, :, start:end].copy_(value_scales)  # type: ignore[index]
        self.keys[layer, :, :, start:end].copy_(keys)
        self.values[layer, :, :, start:end].copy_(values)
        return end

    def store_position(self, layer: int, keys: torch.Tensor, values: torch.Tensor, position: int) -> None:
        """Store one decoding step's keys/values FloatTensor[B, H, Dh] at ``position`` (an int8 or
        int4 cache rounds them with :func:`~speechkit.nn.decode_kernel.store_quantized`, as
        :meth:`store` does)."""
        if position >= self.max_length:
            raise RuntimeError(f"KV cache overflow: writing up to {position + 1} of {self.max_length} positions")
        if self.quantized:
            store_quantized(keys, self.keys[layer, :, :, position], self.key_scales[layer, :, :, position])  # type: ignore[index]
            store_quantized(values, self.values[layer, :, :, position], self.value_scales[layer, :, :, position])  # type: ignore[index]
        else:
            self.keys[layer, :, :, position].copy_(keys)
            self.values[layer, :, :, position].copy_(values)

    def store_at(self, layer: int, keys: torch.Tensor, values: torch.Tensor, index: torch.Tensor) -> None:
        """:meth:`store_position` with the position in a device tensor, index LongTensor[1]: no host
        value, so a recorded CUDA graph can replay it (:mod:`speechkit.nn.graph_decode`)."""
        if self.quantized:
            assert self.key_scales is not None and self.value_scales is not None
            for rows, store, scales in ((keys, self.keys, self.key_scales), (values, self.values, self.value_scales)):
                quantized, row_scales = quantize_rows(rows, self.bits)
                store[layer].index_copy_(2, index, quantized.unsqueeze(2))
                scales[layer].index_copy_(2, index, row_scales.unsqueeze(2))
        else:
            self.keys[layer].index_copy_(2, index, keys.unsqueeze(2).to(self.keys.dtype))
            self.values[layer].index_copy_(2, index, values.unsqueeze(2).to(self.values.dtype))

    def read(self, layer: int, end: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's keys/values of positions [0, end) as [B, H, end, Dh] in ``dtype``: views
        where the cache holds that dtype, else cast or (int8, int4) dequantised copies."""
        if self.quantized:
            return self.dequantized(layer, end, dtype)
        return self.keys[layer, :, :, :end].to(dtype), self.values[layer, :, :, :end].to(dtype)

    def step_attention(self, layer: int, query: torch.Tensor, end: int) -> torch.Tensor:
        """A decoding step's attention: query FloatTensor[B, H, 1, Dh] over this layer's positions
        [0, end) (padding masked) -> FloatTensor[B, H, 1, Dh]. On CPU the cache is read as it is
        stored (:func:`decode_step_attention`); elsewhere it is cast or dequantised for SDPA."""
        keys, values = self.keys[layer, :, :, :end], self.values[layer, :, :, :end]
        mask = self.step_mask(end)
        if query.device.type == "cpu":
            if self.quantized:
                return decode_step_attention(query, keys, values, mask, self.key_scales[layer, :, :, :end],  # type: ignore[index]
                                             self.value_scales[layer, :, :, :end])  # type: ignore[index]
            return decode_step_attention(query, keys, values, mask)
        keys, values = self.read(layer, end, query.dtype)
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask)

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store keys/values FloatTensor[B, H, N, Dh] at ``start``; return positions [0, start+N):
        views of the cache, or for an int8 or int4 cache dequantised float32 copies."""
        end = self.store(layer, keys, values, start)
        if self.quantized:
            return self.dequantized(layer, end)
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def dequantized(self, layer: int, end: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """An int8 or int4 cache's keys/values of positions [0, end) as [B, H, end, Dh] in ``dtype``."""
        assert self.key_scales is not None and self.value_scales is not None
        keys = dequantize_rows(self.keys[layer, :, :, :end], self.key_scales[layer, :, :, :end], dtype)
        values = dequantize_rows(self.values[layer, :, :, :end], self.value_scales[layer, :, :, :end], dtype)
        return keys, values

    def mark_valid(self, valid: torch.Tensor, start: int) -> None:
        """Record which of the positions [start, start+N) are real (valid: BoolTensor[B, N])."""
        self.key_valid[:, start : start + valid.shape[1]].copy_(valid)
        self.has_padding = self.has_padding or not bool(valid.all())

    def step_mask(self, end: int) -> torch.Tensor | None:
        """Mask for a query at position ``end - 1``: BoolTensor[B, 1, 1, end], None without padding."""
        if not self.has_padding:
            return None
        return self.key_valid[:, None, None, :end]


class MultiHeadAttention(nn.Module):
    """Self-attention with fused QKV projection.

    Args:
        d_model: model width; num_heads: heads (``d_model % num_heads == 0``); dropout:
            attention-probability dropout (training only).

    ``sequence_precision`` is the arithmetic of attention over whole sequences without a cache
    (the NAR's passes) in inference: ``"fp32"`` (``scaled_dot_product_attention``) or ``"bf16"``
    (:func:`~speechkit.nn.bf16_attention.bf16_attention`, bfloat16 products with float32 sums, about
    twice as fast on CPUs with AVX512-BF16), set by :func:`~speechkit.infer.precision.apply_precision`.
    """

    #: "fp32" or "bf16": see the class docstring
    sequence_precision: str = "fp32"

    def __init__(self, d_model: int, num_heads: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        layer: int = 0,
        start: int = 0,
    ) -> torch.Tensor:
        """x: FloatTensor[B, N, D] -> FloatTensor[B, N, D].

        mask: BoolTensor broadcastable to [B, H, N, S] (True = attend), S = N without a cache or
        ``start + N`` with one; with ``cache`` the new keys/values are written at ``start`` and
        the queries attend to all cached positions [0, start + N).
        """
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, N, Dh]
        if cache is not None:
            key, value = cache.write(layer, key, value, start)
        if cache is not None and length == 1 and x.device.type == "cpu" and not self.training:
            attended = decode_step_attention(query, key, value, mask)
        elif cache is None and self.sequence_precision == "bf16" and not self.training:
            attended = bf16_attention(query, key, value, mask)
        else:
            if key.dtype != query.dtype:  # a reduced-precision cache (prefill, or off CPU)
                key, value = key.to(query.dtype), value.to(query.dtype)
            attended = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )  # [B, H, N, Dh]
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))


def decode_step_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
    key_scales: torch.Tensor | None = None,
    value_scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """A decoding step's attention on CPU: query FloatTensor[B, H, 1, Dh], key/value [B, H, S, Dh]
    (views of the cache, float32, bfloat16, or int8 / int4 pairs [B, H, S, Dh / 2] with their
    scales FloatTensor[B, H, S]), mask
    BoolTensor[B, 1, 1, S] (the cache's :meth:`KVCache.step_mask`) or None -> FloatTensor[B, H, 1, Dh].

    Uses the compiled kernel of :mod:`speechkit.nn.decode_kernel` where it is available (it reads
    the cache at close to memory bandwidth), else :func:`single_query_attention`.
    """
    batch, length = key.shape[0], key.shape[2]
    step_mask = mask is None or (mask.dim() == 4 and tuple(mask.shape) == (batch, 1, 1, length))
    if step_mask and query.dtype == torch.float32 and decode_kernel_available():
        return decode_attention(query, key, value, None if mask is None else mask[:, 0, 0], key_scales, value_scales)
    if key_scales is not None and value_scales is not None:
        key, value = dequantize_rows(key, key_scales, query.dtype), dequantize_rows(value, value_scales, query.dtype)
    else:
        key, value = key.to(query.dtype), value.to(query.dtype)
    return single_query_attention(query, key, value, mask)


def single_query_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention of one query per sequence and head (a decoding step) over S cached keys.

    query FloatTensor[B, H, 1, Dh], key/value FloatTensor[B, H, S, Dh] (views of the cache),
    mask BoolTensor broadcastable to [B, H, 1, S] (True = attend) -> FloatTensor[B, H, 1, Dh].
    The same result as ``scaled_dot_product_attention``; on CPU two batched matrix-vector
    products read the cache ~15 % faster than its blocked kernel does for a single query
    (docs/performance.md), and decoding is bound by that read.
    """
    scores = torch.matmul(query * query.shape[-1] ** -0.5, key.transpose(-1, -2))  # [B, H, 1, S]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), value)
