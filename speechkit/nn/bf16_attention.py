"""Attention of whole sequences with bfloat16 products on CPU: the NAR's layers in bf16 and int8 precision.

A NAR pass attends every position to every other one: at paper size and 1130 positions (a 10 s
output after a 3 s prompt) that is 2 x 1.3 G multiply-adds per layer, 12 layers per level and 7
levels, about 2.8 s of an int8 end-to-end run with ``scaled_dot_product_attention`` in float32
(~78 G multiply-adds/s on the 2-core machines of docs/performance.md). These CPUs multiply
bfloat16 pairs with ``vdpbf16ps``, 32 multiply-adds per instruction into float32 sums, twice the
float32 rate. :func:`bf16_attention` rounds the queries (times the softmax scale), keys, values
and softmax probabilities to bfloat16 and keeps every sum, the softmax and the normalisation in
float32 (the kernel of :mod:`speechkit.nn.bf16_attention_source`); at 1130 positions it takes
about half the time of torch's float32 attention.

:func:`~speechkit.infer.precision.apply_precision` turns it on for the attention layers of bf16
and int8 models (``attention="auto"``), whose weights are already rounded as much; fp32 models
keep torch's attention, and so does every model on CPUs without AVX512-BF16, with head sizes
that are not a multiple of 32 up to 256, with gradients, or where the compiled kernels cannot be
built.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from speechkit.nn.decode_kernel import compiled_kernels

__all__ = ["bf16_attention", "bf16_attention_supported", "reference_bf16_attention"]


def bf16_attention_supported(head_dim: int) -> bool:
    """Whether :func:`bf16_attention` runs the compiled kernel here for this head size (AVX512-BF16
    compiled in, a head size that is a multiple of 32 up to 256); elsewhere it uses torch's attention
    in float32."""
    kernel = compiled_kernels()
    return kernel is not None and bool(kernel.bf16_attention_supported(head_dim))


def _kernel_mask(mask: torch.Tensor, batch: int, heads: int, queries: int) -> torch.Tensor | None:
    """A boolean mask broadcastable to [B, H, N, S] -> 4-D with keys contiguous, None if the kernel
    cannot take it (a float mask, or a shape that does not broadcast dimension by dimension)."""
    if mask.dtype != torch.bool or mask.dim() > 4:
        return None
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    for size, full in zip(mask.shape[:3], (batch, heads, queries)):
        if size not in (1, full):
            return None
    return mask if mask.stride(-1) == 1 else mask.contiguous()


def bf16_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of every query over all keys, in bfloat16 products with float32 sums.

    query FloatTensor[B, H, N, Dh], key/value FloatTensor[B, H, S, Dh] (any strides, e.g. views of
    a fused QKV projection), mask BoolTensor broadcastable to [B, H, N, S] (True = attend) or
    None -> FloatTensor[B, H, N, Dh] (a view of a contiguous [B, N, H, Dh]: merging the heads
    afterwards is free). A query with no key to attend gives zeros. Where the kernel does not run
    (see :func:`bf16_attention_supported`; also for float masks, other dtypes and devices, and
    with gradients) it is ``scaled_dot_product_attention`` in the inputs' dtype.
    """
    batch, heads, queries, head_dim = query.shape
    kernel = compiled_kernels() if query.device.type == "cpu" else None
    usable = (kernel is not None and query.dtype == key.dtype == value.dtype == torch.float32
              and not (torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)))
              and bool(kernel.bf16_attention_supported(head_dim)))
    kernel_mask = None if mask is None or not usable else _kernel_mask(mask, batch, heads, queries)
    if not usable or (mask is not None and kernel_mask is None):
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    parts = [t if t.stride(-1) == 1 else t.contiguous() for t in (query, key, value)]
    return kernel.bf16_attention(*parts, kernel_mask).transpose(1, 2)


def reference_bf16_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             mask: torch.Tensor | None = None) -> torch.Tensor:
    """What :func:`bf16_attention` computes, in torch operations (for tests): the scaled queries,
    keys, values and the softmax numerators rounded to bfloat16, everything else in float32; the
    output divided by the sum of the unrounded numerators. Rows with no key to attend give zeros."""
    rounded = lambda t: t.to(torch.bfloat16).float()  # noqa: E731
    scores = torch.matmul(rounded(query * query.shape[-1] ** -0.5), rounded(key).transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True)
    numerators = torch.exp(scores - top.masked_fill(top == float("-inf"), 0.0))
    total = numerators.sum(dim=-1, keepdim=True)
    out = torch.matmul(rounded(numerators), rounded(value)) / total
    return torch.where(total > 0, out, torch.zeros_like(out))
