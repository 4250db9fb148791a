"""A CPU kernel for linear layers applied to a few rows at a time (the steps of AR decoding).

A decoding step multiplies 1-16 activation rows by every weight matrix of the model, so its
cost is reading the weights. oneDNN's pre-packed fp32 path reads them at ~70 % of the measured
memory bandwidth on the 2-core AVX-512 machines of docs/performance.md, its bf16 path less, and
torch has no fast weight-only int8 path on CPU (``torch._weight_int8pack_mm`` runs at ~1 GB/s
there; dynamic quantisation also quantises the activations, so a sequence's output depends on
its batch). This kernel streams each weight row once from memory: four output rows at a time
against up to four activation rows, or two against up to eight (16 AVX-512 accumulators either
way, so batch 8 reads and widens each weight once), output rows split in contiguous ranges over
torch's intra-op threads, weights stored as

* ``float32``;
* ``bfloat16`` (widened to fp32 in registers: half the bytes);
* ``int8`` with one fp32 scale per output row (weight-only quantisation, widened in registers:
  a quarter of the bytes; the activations stay fp32, so results do not depend on the batch).

Accumulation is fp32. It is C++ built on first use with ``torch.utils.cpp_extension.load_inline``
(like :mod:`speechkit.nn.decode_kernel`); where it cannot be built, or with
``SPEECHKIT_LINEAR_KERNEL=0``, :func:`rows_linear` computes the same with torch operations.
Inference only: no autograd.
"""
from __future__ import annotations

from typing import Any

import torch

from speechkit.nn.inline_extension import CPP_PRELUDE, InlineExtension

#: weight storage dtypes the kernel reads
WEIGHT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.int8)

_SOURCE = CPP_PRELUDE + r"""
static inline float load(const int8_t* p, int64_t i) { return static_cast<float>(p[i]); }
#if defined(__AVX512F__)
static inline __m512 load16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
#endif

// out[m][r] = sum_k x[m, k] * w[r, k] for MB activation rows and NR weight rows (MB * NR <= 16
// accumulators, so everything stays in the 32 AVX-512 registers).
template <typename W, int MB, int NR>
static inline void tile(const float* x, int64_t ldx, const W* w, int64_t ldw, int64_t K, float out[8][4]) {
  int64_t k = 0;
#if defined(__AVX512F__)
  __m512 acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = _mm512_setzero_ps();
  for (; k + 16 <= K; k += 16) {
    __m512 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = load16(w + r * ldw + k);
    for (int m = 0; m < MB; ++m) {
      const __m512 xv = _mm512_loadu_ps(x + m * ldx + k);
      for (int r = 0; r < NR; ++r) acc[m][r] = _mm512_fmadd_ps(xv, wv[r], acc[m][r]);
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) out[m][r] = _mm512_reduce_add_ps(acc[m][r]);
#else
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) out[m][r] = 0.f;
#endif
  for (; k < K; ++k) {
    for (int r = 0; r < NR; ++r) {
      const float wk = load(w + r * ldw, k);
      for (int m = 0; m < MB; ++m) out[m][r] += x[m * ldx + k] * wk;
    }
  }
}

// One tile of mb (1..8) activation rows: 4 weight rows per tile up to 4 activation rows, 2 above.
template <typename W, int NR>
static inline void tile_rows(int64_t mb, const float* x, int64_t ldx, const W* w, int64_t ldw, int64_t K,
                             float out[8][4]) {
  switch (mb) {
    case 1: tile<W, 1, NR>(x, ldx, w, ldw, K, out); break;
    case 2: tile<W, 2, NR>(x, ldx, w, ldw, K, out); break;
    case 3: tile<W, 3, NR>(x, ldx, w, ldw, K, out); break;
    case 4: tile<W, 4, NR>(x, ldx, w, ldw, K, out); break;
    case 5: tile<W, 5, (NR > 2 ? 2 : NR)>(x, ldx, w, ldw, K, out); break;
    case 6: tile<W, 6, (NR > 2 ? 2 : NR)>(x, ldx, w, ldw, K, out); break;
    case 7: tile<W, 7, (NR > 2 ? 2 : NR)>(x, ldx, w, ldw, K, out); break;
    default: tile<W, 8, (NR > 2 ? 2 : NR)>(x, ldx, w, ldw, K, out); break;
  }
}

template <typename W>
static void run(const float* x, int64_t M, int64_t K, const W* w, int64_t N, const float* scale,
                const float* bias, float* y) {
  constexpr int64_t NB = 4;  // weight rows per block (a block is what one task reads from memory)
  const int64_t blocks = (N + NB - 1) / NB;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t grain = std::max<int64_t>(1, (blocks + threads - 1) / threads);  // contiguous ranges
  at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
    float out[8][4];
    for (int64_t block = begin; block < end; ++block) {
      const int64_t n0 = block * NB, nb = std::min<int64_t>(NB, N - n0);
      for (int64_t m0 = 0; m0 < M; m0 += 8) {
        const int64_t mb = std::min<int64_t>(8, M - m0);
        const float* xm = x + m0 * K;
        const int64_t nr = mb <= 4 ? 4 : 2;  // weight rows per tile
        for (int64_t r0 = 0; r0 < nb; r0 += nr) {
          float part[8][4];
          if (r0 + nr <= nb) {
            if (nr == 4) tile_rows<W, 4>(mb, xm, K, w + (n0 + r0) * K, K, K, part);
            else tile_rows<W, 2>(mb, xm, K, w + (n0 + r0) * K, K, K, part);
            for (int64_t m = 0; m < mb; ++m)
              for (int64_t r = 0; r < nr; ++r) out[m][r0 + r] = part[m][r];
          } else {
            for (int64_t r = r0; r < nb; ++r) {
              tile_rows<W, 1>(mb, xm, K, w + (n0 + r) * K, K, K, part);
              for (int64_t m = 0; m < mb; ++m) out[m][r] = part[m][0];
            }
          }
        }
        for (int64_t m = 0; m < mb; ++m) {
          float* row = y + (m0 + m) * N + n0;
          for (int64_t r = 0; r < nb; ++r) {
            float value = out[m][r];
            if (scale != nullptr) value *= scale[n0 + r];
            if (bias != nullptr) value += bias[n0 + r];
            row[r] = value;
          }
        }
      }
    }
  });
}

torch::Tensor rows_linear(torch::Tensor x, torch::Tensor weight, c10::optional<torch::Tensor> scale,
                          c10::optional<torch::Tensor> bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat, "x must be float32 [M, K]");
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == x.size(1) && weight.is_contiguous(),
              "weight must be a contiguous [N, K] matrix");
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  x = x.contiguous();
  const float* scale_data = nullptr;
  if (scale.has_value()) {
    TORCH_CHECK(scale->scalar_type() == torch::kFloat && scale->numel() == N && scale->is_contiguous(),
                "scale must be float32 [N]");
    scale_data = scale->data_ptr<float>();
  }
  const float* bias_data = nullptr;
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == torch::kFloat && bias->numel() == N && bias->is_contiguous(),
                "bias must be float32 [N]");
    bias_data = bias->data_ptr<float>();
  }
  auto y = torch::empty({M, N}, x.options());
  const float* xd = x.data_ptr<float>();
  float* yd = y.data_ptr<float>();
  switch (weight.scalar_type()) {
    case torch::kFloat: run<float>(xd, M, K, weight.data_ptr<float>(), N, scale_data, bias_data, yd); break;
    case torch::kBFloat16:
      run<uint16_t>(xd, M, K, reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>()), N, scale_data,
                    bias_data, yd);
      break;
    case torch::kChar:
      TORCH_CHECK(scale_data != nullptr, "int8 weights need their per-row scale");
      run<int8_t>(xd, M, K, weight.data_ptr<int8_t>(), N, scale_data, bias_data, yd);
      break;
    default: TORCH_CHECK(false, "weights must be float32, bfloat16 or int8");
  }
  return y;
}
"""

_EXTENSION = InlineExtension("speechkit_rows_linear", _SOURCE, ["rows_linear"], switch="SPEECHKIT_LINEAR_KERNEL",
                             fallback="torch's linear layers")


def _kernel() -> Any:
    """The compiled extension, built on first use; None where it cannot be built or is disabled."""
    return _EXTENSION.get()
    if os.environ.get("SPEECHKIT_LINEAR_KERNEL", "1") == "0":
        _failed = True
        return None
    with _lock:
        if _module is None and not _failed:
            try:
                from torch.utils.cpp_extension import load_inline

                _module = load_inline(
                    name="speechkit_rows_linear",
                    cpp_sources=[_SOURCE],
                    functions=["rows_linear"],
                    extra_cflags=["-O3", "-march=native", "-fopenmp"],
                    extra_ldflags=["-fopenmp"],
                    verbose=False,
                )
            except Exception as error:  # no compiler / ninja / headers: the torch path is used instead
                _failed = True
                log.warning("linear kernel unavailable (%s: %s); using torch's linear layers instead. "
                            "Install a C++ compiler and ninja (pip install ninja) for faster CPU decoding.",
                            type(error).__name__, str(error).splitlines()[0] if str(error) else "")
    return _module


def linear_kernel_available() -> bool:
    """Whether the compiled kernel is in use on CPU (builds it on the first call)."""
    return _kernel() is not None


def quantize_rows_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 quantisation: FloatTensor[N, K] -> (CharTensor[N, K] in
    [-127, 127], FloatTensor[N] scales) with ``weight ~= q * scale[:, None]``."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    quantized = torch.round(weight / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return quantized.contiguous(), scale.contiguous()


def reference_rows_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None = None,
                          bias: torch.Tensor | None = None) -> torch.Tensor:
    """The torch computation of :func:`rows_linear` (any device): weights widened to fp32."""
    dense = weight.float() if scale is None else weight.float() * scale[:, None]
    return torch.nn.functional.linear(x.float(), dense, bias)


def rows_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ (weight * scale[:, None]).T + bias`` for a few rows.

    x FloatTensor[M, K] (float32); weight [N, K] contiguous, float32, bfloat16 or int8 (int8
    needs ``scale``); scale FloatTensor[N] or None; bias FloatTensor[N] or None ->
    FloatTensor[M, N]. Runs the compiled kernel on CPU, the torch reference elsewhere.
    """
    kernel = _kernel() if x.device.type == "cpu" and x.dtype == torch.float32 else None
    if kernel is None or torch.is_grad_enabled() and x.requires_grad:
        return reference_rows_linear(x, weight, scale, bias)
    return kernel.rows_linear(x, weight, scale, bias)
