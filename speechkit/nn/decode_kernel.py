"""A CPU kernel for the attention of one decoding step over a KV cache (fp32, bf16, int8 or int4 cache).

Batch-1 decoding is bound by memory reads: every step reads the weights and the keys and values
cached so far. torch's CPU paths for one query per head (``scaled_dot_product_attention``, or
two batched matrix-vector products) read the cache at 6-15 GB/s on the 2-core AVX-512 machines
of docs/performance.md, a third of the bandwidth the linear layers reach. This kernel streams
each head's keys, then its values, once, in vectorised loops, one (sequence, head) per task on
torch's intra-op threads: scores 16 keys at a time (a transposing sum instead of 16 horizontal
ones), a vectorised exponential, and the weighted values summed in registers. It reads a
bfloat16 cache directly (converted in registers), which halves the cache bytes of every step,
and an int8 cache with one scale per position and head (a quarter of the bytes).

An int8 cache is multiplied in integers where AVX512-BW is compiled in (``vpdpwssd``, exact int32
sums of int16 pairs): for head sizes that are multiples of 32 the query (times the softmax scale)
is rounded to int16 first, and for multiples of 64 so are the weights of the values (softmax
numerator times the value scale), each in steps of its largest magnitude / 32767 per sequence
and head. Those roundings, below 2e-5 of the largest element, are far inside the cache's own
int8 rounding, and they take about half the instructions per cached element: at paper size,
batch 8, 700 positions, 12 layers, the attention took 1.74-1.75 instead of 3.07-3.24 ms from the
CPU's caches, 4.68-5.38 instead of 5.45-7.50 ms from memory (``tools/cache_attention_rate.py``;
docs/performance.md, "Attention in integers").

An int4 cache (``quantize_rows(x, bits=4)``: levels -7..7 with the same per-position scales, two
per byte, element j in the low nibble of byte j and element j + Dh/2 in its high one) takes the
same integer arithmetic for head sizes 64 and 128: each 32 bytes are widened to int16 once and
their nibbles sign-extended with shifts. At half the bytes of int8, the attention of 12 layers at
batch 8 and 700 positions took 3.41-3.53 ms from memory against int8's 4.67-7.70 ms
(docs/performance.md, "An int4 KV cache"). Other head sizes and CPUs without AVX512-BW dequantise
it for torch's attention.

Over int8 and int4 caches each task also fetches the next task's keys, values and scales into L2
while it works (``NextTask``, at 1.5x the pace it reads its own), so that the memory streams
during the arithmetic: the attention of 12 layers at batch 8 and 700 positions from memory took
3.05-3.16 instead of 3.65-4.01 ms, and batch-8 decoding steps 7-11 % less time
(docs/performance.md, "Fetching the next head's cache").

It is C++ built on first use with ``torch.utils.cpp_extension.load_inline`` (a C++ compiler and
ninja; the build is cached under ``~/.cache/torch_extensions``). Where it cannot be built, or
with ``SPEECHKIT_DECODE_KERNEL=0``, :func:`decode_attention` computes the same result with torch
operations. Inference only: no autograd.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import threading
from typing import Any, Iterator

import torch

from speechkit.errors import describe_error
from speechkit.nn.bf16_attention_source import BF16_ATTENTION_SOURCE
from speechkit.nn.decode_kernel_source import DECODE_KERNEL_SOURCE
from speechkit.nn.fused_step_source import FUSED_STEP_SOURCE
from speechkit.nn.stream_gemv_source import STREAM_GEMV_SOURCE

log = logging.getLogger("speechkit.nn")

_lock = threading.Lock()
_module: Any = None
_failed = False


@contextlib.contextmanager
def _interpreter_ninja_first() -> Iterator[None]:
    """While building: PATH starts with this interpreter's scripts folder when a ``ninja`` is there
    (a venv's, from pip). torch runs whichever ``ninja`` PATH finds first, and two ninja versions
    (the venv's and /usr/bin's) do not trust each other's build log, so each rebuilt the kernels
    (30-60 s) after the other had built them: an activated shell and ``.venv/bin/python`` (as
    tools/test.sh and tools/install.sh run it) took turns rebuilding."""
    scripts = os.path.dirname(sys.executable)
    if not os.path.isfile(os.path.join(scripts, "ninja")):
        yield
        return
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = scripts + os.pathsep + before
    try:
        yield
    finally:
        os.environ["PATH"] = before


def extension_name() -> str:
    """The compiled extension's name, one per Python environment (``speechkit_decode_attention_``
    and a hash of ``sys.prefix``). The build uses the environment's torch headers and libraries, so
    two environments sharing ``~/.cache/torch_extensions`` (a checkout's venv and a CI clone's)
    rebuilt over each other's library under one name, possibly while a process had it loaded."""
    return "speechkit_decode_attention_" + hashlib.sha1(sys.prefix.encode()).hexdigest()[:8]


def _kernel() -> Any:
    """The compiled extension, built on first use; None where it cannot be built or is disabled."""
    global _module, _failed
    if _module is not None or _failed:
        return _module
    if os.environ.get("SPEECHKIT_DECODE_KERNEL", "1") == "0":
        _failed = True
        return None
    with _lock:
        if _module is None and not _failed:
            try:
                from torch.utils.cpp_extension import load_inline

                with _interpreter_ninja_first():
                    _module = load_inline(
                        name=extension_name(),
                        cpp_sources=[DECODE_KERNEL_SOURCE + STREAM_GEMV_SOURCE + FUSED_STEP_SOURCE + BF16_ATTENTION_SOURCE],
                        functions=["decode_attention", "store_quantized", "int4_attention", "fused_decode_step",
                                   "stream_linear", "int8_stream_vectorized", "bf16_attention", "bf16_attention_supported"],
                        extra_cflags=["-O3", "-march=native", "-fopenmp"],
                        extra_ldflags=["-fopenmp"],
                        verbose=False,
                    )
            except Exception as error:  # no compiler / ninja / headers: the torch path is used instead
                _failed = True
                log.warning("decode attention kernel unavailable (%s); using torch's attention instead. "
                            "Install a C++ compiler and ninja (pip install ninja) for faster CPU decoding.",
                            describe_error(error))
    return _module


def compiled_kernels() -> Any:
    """The compiled extension (``decode_attention``, ``store_quantized``, ``int4_attention``, ``fused_decode_step`` /
    ``stream_linear`` of :mod:`speechkit.nn.fused_decode`, and ``bf16_attention`` of :mod:`speechkit.nn.bf16_attention`),
    or None where it cannot be built or is disabled."""
    return _kernel()


def decode_kernel_available() -> bool:
    """Whether the compiled kernel is in use on CPU (builds it on the first call)."""
    return _kernel() is not None


def reference_decode_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_valid: torch.Tensor | None = None,
    key_scales: torch.Tensor | None = None,
    value_scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """The torch computation of :func:`decode_attention` (any device; keys/values cast to the
    query's dtype, int8/int4 ones multiplied by their scales). Rows with no valid key give zeros."""
    key = key.to(query.dtype) if key_scales is None else dequantize_rows(key, key_scales, query.dtype)
    value = value.to(query.dtype) if value_scales is None else dequantize_rows(value, value_scales, query.dtype)
    scores = torch.matmul(query * query.shape[-1] ** -0.5, key.transpose(-1, -2))  # [B, H, 1, S]
    if key_valid is not None:
        scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return torch.matmul(weights, value)


def decode_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_valid: torch.Tensor | None = None,
    key_scales: torch.Tensor | None = None,
    value_scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of one query per sequence and head over S cached positions.

    query FloatTensor[B, H, 1, Dh] (float32); key/value [B, H, S, Dh] float32, bfloat16 or int8,
    or int4 pairs ByteTensor[B, H, S, Dh / 2] (:func:`quantize_rows`), with a contiguous last
    dimension (views of a :class:`~speechkit.nn.attention.KVCache` are); key_valid BoolTensor[B, S]
    (True = attend) or None; for int8/int4 keys/values their scales key_scales/value_scales
    FloatTensor[B, H, S] (``key[s] * key_scales[s]`` is the key) -> FloatTensor[B, H, 1, Dh]. With
    int8 keys and Dh a multiple of 32, or int4 keys, the compiled kernel rounds the scaled query to
    int16 first (see the module docstring); torch's path does not.
    """
    if key.dtype in (torch.int8, torch.uint8) and (key_scales is None or value_scales is None):
        raise ValueError("decode_attention: an int8 or int4 cache needs key_scales and value_scales")
    kernel = _kernel() if query.device.type == "cpu" and query.dtype == torch.float32 else None
    if key.dtype == torch.uint8 and kernel is not None and not kernel.int4_attention(query.shape[-1]):
        kernel = None
    if kernel is None or torch.is_grad_enabled() and (query.requires_grad or key.requires_grad):
        return reference_decode_attention(query, key, value, key_valid, key_scales, value_scales)
    valid = None if key_valid is None else key_valid if key_valid.stride(-1) == 1 else key_valid.contiguous()
    return kernel.decode_attention(query, key, value, valid, key_scales, value_scales)


#: bits per element of the quantised caches' dtypes (``torch.quint4x2`` names int4 pairs): what
#: :func:`quantize_rows` takes as ``bits``
QUANTIZED_KV_BITS: dict[torch.dtype, int] = {torch.int8: 8, torch.quint4x2: 4}


def quantize_rows(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantisation of the last dimension, one scale per row: x FloatTensor[..., Dh] ->
    (quantized, FloatTensor[...] scales) with ``x ~= q * scale``, q = round-half-even(x / scale)
    clamped to +-(2^(bits-1) - 1), scale = max |x| / (2^(bits-1) - 1) (1 for all-zero rows).

    bits 8: quantized CharTensor[..., Dh]. bits 4 (Dh even): ByteTensor[..., Dh / 2] of pairs, byte
    j holding q[j] in its low nibble and q[j + Dh/2] in its high one (two's complement), the int4
    cache's layout."""
    if bits not in (4, 8):
        raise ValueError(f"quantize_rows: bits must be 4 or 8, got {bits}")
    top = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1).float() / float(top)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    levels = torch.round(x.float() / scale.unsqueeze(-1)).clamp_(-top, top).to(torch.int8)
    if bits == 8:
        return levels, scale
    if x.shape[-1] % 2:
        raise ValueError(f"an int4 cache needs an even head size, got {x.shape[-1]}")
    half = x.shape[-1] // 2
    low, high = levels[..., :half].to(torch.int16), levels[..., half:].to(torch.int16)
    return ((low & 15) | ((high & 15) << 4)).to(torch.uint8), scale


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Int4 pairs ByteTensor[..., Dh / 2] (:func:`quantize_rows` with bits 4) -> their levels
    CharTensor[..., Dh] in -7..7."""
    wide = packed.to(torch.int16)
    low, high = ((wide & 15) ^ 8) - 8, (((wide >> 4) & 15) ^ 8) - 8  # sign-extended nibbles
    return torch.cat([low, high], dim=-1).to(torch.int8)


def dequantize_rows(quantized: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The inverse of :func:`quantize_rows`: quantized [..., Dh] (int8 or any dtype) or int4 pairs
    ByteTensor[..., Dh / 2], and scales [...] -> ``quantized * scale`` as [..., Dh] in ``dtype``."""
    levels = unpack_int4(quantized) if quantized.dtype == torch.uint8 else quantized
    return levels.to(dtype) * scales.unsqueeze(-1).to(dtype)


def store_quantized(rows: torch.Tensor, keys: torch.Tensor, scales: torch.Tensor) -> None:
    """Write one position of an int8 or int4 cache in place: rows FloatTensor[B, H, Dh] -> keys
    CharTensor[B, H, Dh] (int8) or ByteTensor[B, H, Dh / 2] (int4 pairs) and scales FloatTensor[B, H]
    (views of a :class:`~speechkit.nn.attention.KVCache`), exactly as :func:`quantize_rows` rounds
    them; one call instead of ~7 tensor operations (the compiled kernel on CPU, torch elsewhere)."""
    kernel = _kernel() if rows.device.type == "cpu" and rows.dtype == torch.float32 else None
    if kernel is None:
        quantized, row_scales = quantize_rows(rows, bits=4 if keys.dtype == torch.uint8 else 8)
        keys.copy_(quantized)
        scales.copy_(row_scales)
        return
    kernel.store_quantized(rows, keys, scales)


def int4_attention_supported(head_dim: int) -> bool:
    """Whether the compiled kernel attends over an int4 cache of this head size (AVX512-BW, head
    size 64 or 128); elsewhere :func:`decode_attention` dequantises it for torch's attention."""
    kernel = _kernel()
    return kernel is not None and bool(kernel.int4_attention(head_dim))
