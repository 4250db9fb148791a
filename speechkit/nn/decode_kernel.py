"""A CPU kernel for the attention of one decoding step over a KV cache (fp32 or bf16 cache).

Batch-1 decoding is bound by memory reads: every step reads the weights and the keys and values
cached so far. torch's CPU paths for one query per head (``scaled_dot_product_attention``, or
two batched matrix-vector products) read the cache at 6-15 GB/s on the 2-core AVX-512 machines
of docs/performance.md, a third of the bandwidth the linear layers reach. This kernel streams
each head's keys, then its values, once, in vectorised loops, one (sequence, head) per task on
torch's intra-op threads, and reads a bfloat16 cache directly (converted in registers), which
halves the cache bytes of every step.

It is C++ built on first use with ``torch.utils.cpp_extension.load_inline`` (a C++ compiler and
ninja; the build is cached under ``~/.cache/torch_extensions``). Where it cannot be built, or
with ``SPEECHKIT_DECODE_KERNEL=0``, :func:`decode_attention` computes the same result with torch
operations. Inference only: no autograd.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

import torch

log = logging.getLogger("speechkit.nn")

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

static inline float load(const float* p, int64_t i) { return p[i]; }
static inline float load(const uint16_t* p, int64_t i) {
  uint32_t bits = static_cast<uint32_t>(p[i]) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

#if defined(__AVX512F__)
#include <immintrin.h>
// 16 values of a row -> 16 floats
static inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
static inline __m512 load16(const uint16_t* p) {
  __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
#endif

template <typename T>
static inline float dot(const float* q, const T* row, int64_t D) {
#if defined(__AVX512F__)
  if (D % 16 == 0) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), load16(row + d), acc);
    return _mm512_reduce_add_ps(acc);
  }
#endif
  float acc = 0.f;
  for (int64_t d = 0; d < D; ++d) acc += q[d] * load(row, d);
  return acc;
}

template <typename T>
static inline void axpy(float p, const T* row, float* out, int64_t D) {
#if defined(__AVX512F__)
  if (D % 16 == 0) {
    const __m512 weight = _mm512_set1_ps(p);
    for (int64_t d = 0; d < D; d += 16)
      _mm512_storeu_ps(out + d, _mm512_fmadd_ps(weight, load16(row + d), _mm512_loadu_ps(out + d)));
    return;
  }
#endif
  for (int64_t d = 0; d < D; ++d) out[d] += p * load(row, d);
}

template <typename T>
static void attend_one(const float* q, const T* k, const T* v, const bool* valid, int64_t S, int64_t D,
                       int64_t k_stride, int64_t v_stride, float scale, float* out, float* scores) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float top = neg_inf;
  for (int64_t s = 0; s < S; ++s) {
    if (valid != nullptr && !valid[s]) { scores[s] = neg_inf; continue; }
    const float score = dot(q, k + s * k_stride, D) * scale;
    scores[s] = score;
    top = score > top ? score : top;
  }
  for (int64_t d = 0; d < D; ++d) out[d] = 0.f;
  if (top == neg_inf) return;  // nothing to attend to: zeros (torch would give NaN)
  float total = 0.f;
  for (int64_t s = 0; s < S; ++s) {
    const float e = scores[s] == neg_inf ? 0.f : std::exp(scores[s] - top);
    scores[s] = e;
    total += e;
  }
  const float inv = 1.f / total;
  for (int64_t s = 0; s < S; ++s) {
    const float p = scores[s] * inv;
    if (p != 0.f) axpy(p, v + s * v_stride, out, D);
  }
}

template <typename T>
static void run(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                const c10::optional<torch::Tensor>& valid, torch::Tensor& out, const T* k_data, const T* v_data) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3), S = k.size(2);
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  const float* q_data = q.data_ptr<float>();
  float* out_data = out.data_ptr<float>();
  const bool* valid_data = valid.has_value() ? valid->data_ptr<bool>() : nullptr;
  const int64_t vb = valid.has_value() ? valid->stride(0) : 0;
  const auto ks = k.strides(), vs = v.strides();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(S));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / H, h = task % H;
      attend_one<T>(q_data + (b * H + h) * D, k_data + b * ks[0] + h * ks[1], v_data + b * vs[0] + h * vs[1],
                    valid_data == nullptr ? nullptr : valid_data + b * vb, S, D, ks[2], vs[2], scale,
                    out_data + (b * H + h) * D, scores.data());
    }
  });
}

torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, c10::optional<torch::Tensor> valid) {
  TORCH_CHECK(q.dim() == 4 && q.size(2) == 1, "query must be [B, H, 1, Dh]");
  TORCH_CHECK(k.dim() == 4 && v.sizes() == k.sizes(), "keys and values must be [B, H, S, Dh]");
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3), "shapes disagree");
  TORCH_CHECK(k.stride(3) == 1 && v.stride(3) == 1, "the head dimension must be contiguous");
  TORCH_CHECK(k.scalar_type() == v.scalar_type(), "keys and values must share a dtype");
  TORCH_CHECK(q.scalar_type() == torch::kFloat, "query must be float32");
  q = q.contiguous();
  if (valid.has_value()) {
    TORCH_CHECK(valid->dim() == 2 && valid->size(0) == k.size(0) && valid->size(1) == k.size(2) &&
                valid->scalar_type() == torch::kBool && valid->stride(1) == 1, "valid must be BoolTensor[B, S]");
  }
  auto out = torch::empty_like(q);
  if (k.scalar_type() == torch::kFloat) {
    run<float>(q, k, v, valid, out, k.data_ptr<float>(), v.data_ptr<float>());
  } else {
    TORCH_CHECK(k.scalar_type() == torch::kBFloat16, "the cache must be float32 or bfloat16");
    run<uint16_t>(q, k, v, valid, out, reinterpret_cast<const uint16_t*>(k.data_ptr<at::BFloat16>()),
                  reinterpret_cast<const uint16_t*>(v.data_ptr<at::BFloat16>()));
  }
  return out;
}
"""

_lock = threading.Lock()
_module: Any = None
_failed = False


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

                _module = load_inline(
                    name="speechkit_decode_attention",
                    cpp_sources=[_SOURCE],
                    functions=["decode_attention"],
                    extra_cflags=["-O3", "-march=native", "-fopenmp"],
                    extra_ldflags=["-fopenmp"],
                    verbose=False,
                )
            except Exception as error:  # no compiler / ninja / headers: the torch path is used instead
                _failed = True
                log.warning("decode attention kernel unavailable (%s: %s); using torch's attention instead. "
                            "Install a C++ compiler and ninja (pip install ninja) for faster CPU decoding.",
                            type(error).__name__, str(error).splitlines()[0] if str(error) else "")
    return _module


def decode_kernel_available() -> bool:
    """Whether the compiled kernel is in use on CPU (builds it on the first call)."""
    return _kernel() is not None


def reference_decode_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_valid: torch.Tensor | None = None
) -> torch.Tensor:
    """The torch computation of :func:`decode_attention` (any device; keys/values cast to the
    query's dtype). Rows with no valid key give zeros."""
    key, value = key.to(query.dtype), value.to(query.dtype)
    scores = torch.matmul(query * query.shape[-1] ** -0.5, key.transpose(-1, -2))  # [B, H, 1, S]
    if key_valid is not None:
        scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return torch.matmul(weights, value)


def decode_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention of one query per sequence and head over S cached positions.

    query FloatTensor[B, H, 1, Dh] (float32); key/value [B, H, S, Dh] float32 or bfloat16 with
    a contiguous last dimension (views of a :class:`~speechkit.nn.attention.KVCache` are);
    key_valid BoolTensor[B, S] (True = attend) or None -> FloatTensor[B, H, 1, Dh].
    """
    kernel = _kernel() if query.device.type == "cpu" and query.dtype == torch.float32 else None
    if kernel is None or torch.is_grad_enabled() and (query.requires_grad or key.requires_grad):
        return reference_decode_attention(query, key, value, key_valid)
    valid = None if key_valid is None else key_valid if key_valid.stride(-1) == 1 else key_valid.contiguous()
    return kernel.decode_attention(query, key, value, valid)
