"""The memory-bandwidth floor of batch-1 autoregressive decoding.

One decoding step of a Transformer LM reads every weight of its linear layers once (a
matrix-vector product each) plus the keys and values cached so far; with one sequence that is
far less arithmetic than the memory can feed, so the step can take no less than
``bytes read / memory bandwidth``. :func:`measure_bandwidth` measures the bandwidth on this
device with large tensor copies and reductions; :func:`linear_weight_bytes` and
:func:`kv_cache_bytes` count the bytes.
"""
from __future__ import annotations

import torch
from torch import nn

from speechkit.bench.timing import timed
from speechkit.infer.precision import KV_CACHES
from speechkit.nn.decode_kernel import QUANTIZED_KV_BITS


def read_gbps(tensor: torch.Tensor) -> float:
    """The rate one ``tensor.sum()`` reads at, GB/s (synchronised on CUDA): a quick probe of the
    memory's rate at this moment, for measurements that take turns with it (the host's rate drifts)."""
    seconds = timed(tensor.device, tensor.sum)[1]
    return tensor.numel() * tensor.element_size() / seconds / 1e9


def measure_bandwidth(device: torch.device, *, megabytes: int = 256, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` streaming rates, GB/s, over a ``megabytes`` fp32 tensor (far beyond the caches).

    Returns ``copy_gbps`` (``y.copy_(x)``: bytes read + bytes written per second), ``read_gbps``
    (``x.sum()``: bytes read per second) and ``floor_gbps``, the larger of the two: the rate the
    floor is computed with (the most favourable one measured, so the floor is a lower bound).
    """
    numel = megabytes * 1_000_000 // 4
    source = torch.ones(numel, device=device)
    target = torch.empty_like(source)
    copy_seconds, read = float("inf"), 0.0
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first round warms the pages up
            copy_seconds = min(copy_seconds, timed(device, lambda: target.copy_(source))[1])
            read = max(read, read_gbps(source))
    copy_gbps = 2 * numel * 4 / copy_seconds / 1e9
    return {"copy_gbps": copy_gbps, "read_gbps": read, "floor_gbps": max(copy_gbps, read)}


def _layer_weight_bytes(module: nn.Module) -> int:
    """Bytes of the weight (and bias) of one linear layer: plain, packed or dynamically quantised."""
    from speechkit.infer.precision import PackedLinear

    if isinstance(module, PackedLinear):  # packed tensors and stream blocks hide the real size (padding)
        weights = module.in_features * module.out_features * module.compute_dtype.itemsize
        if module.compute_dtype == torch.int8:  # + its terms: bias, weight scale, column sum (float32)
            return weights + 3 * module.out_features * 4
        return weights + (0 if module.bias is None else module.out_features * module.compute_dtype.itemsize)
    if isinstance(module, nn.Linear):
        return sum(t.numel() * t.element_size() for t in (module.weight, module.bias) if t is not None)
    weight = getattr(module, "weight", None)
    if callable(weight) and hasattr(module, "in_features"):  # torch.ao dynamic quantized Linear
        quantized = weight()
        scales = quantized.q_per_channel_scales().numel() * 8 if quantized.qscheme() in (
            torch.per_channel_affine, torch.per_channel_symmetric) else 8
        bias = module.bias()
        return quantized.numel() * quantized.element_size() + scales + (0 if bias is None else bias.numel() * 4)
    return 0


def linear_weight_bytes(module: nn.Module) -> int:
    """Bytes of all linear-layer weights under ``module`` (what a decoding step reads in full;
    embedding tables contribute one row per token and are left out)."""
    return sum(_layer_weight_bytes(child) for child in module.modules())


def kv_element_bytes(kv_cache: str, head_dim: int) -> float:
    """Bytes per cached key/value element: the dtype's size (half a byte for ``int4``), plus for
    ``int8`` and ``int4`` its float32 scale shared by the ``head_dim`` elements of a position and head."""
    bits = QUANTIZED_KV_BITS.get(KV_CACHES[kv_cache])
    return KV_CACHES[kv_cache].itemsize if bits is None else bits / 8 + 4.0 / head_dim


def kv_cache_bytes(*, num_layers: int, d_model: int, positions: float, batch_size: int = 1, element_size: float = 4) -> float:
    """Bytes of keys and values read by one step that attends to ``positions`` cached positions."""
    return 2.0 * num_layers * batch_size * positions * d_model * element_size
