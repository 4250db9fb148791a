"""C++ of the matrix products over "stream" blocks (:mod:`speechkit.nn.fused_decode`): the linear
layers of the fused decoding step (:mod:`speechkit.nn.fused_step_source`) and ``stream_linear``
(the prompt, and the layer-by-layer path), compiled together with them.

* the weights of each linear layer are stored as "stream" blocks, FloatTensor[ceil(N/64), K, 64]
  (``block[b, k, j] = W[64 b + j, k]``, zero rows past N): a block is one contiguous run of
  memory that gives 64 outputs, read front to back with one weight cache line per fused
  multiply-add row, the access pattern the hardware prefetchers stream fastest; bf16 weights
  keep the same layout of 32-bit elements with a pair of inputs per element,
  BFloat16Tensor[ceil(N/64), ceil(K/2), 64, 2], multiplied by the inputs rounded to bfloat16
  with ``vdpbf16ps`` (half the bytes and half the instructions per multiply-add); int8 weights
  keep it with four inputs per element, CharTensor[ceil(N/64), ceil(K/4), 64, 4], multiplied by
  the inputs quantised per row to uint8 with ``vpdpbusd`` (exact int32 sums, turned into floats
  with the weights' scales and column sums as the outputs are written);
* up to 6 sequences take one pass over a block; more take it chunk by chunk (32 KB; 256 KB of fp32
  weights for more than 8), every group of 6 over a chunk before the next (7-8 sequences: two
  passes over the chunk's two halves of columns, each with every sequence), prefetching the next
  chunk meanwhile: the weights are read from memory once per step whatever the batch;
* ``gemv`` computes one thread's share of the blocks (the fused step's threads each stream their
  own part of the weights), and applies the bias, a residual addition or GELU as each block's
  outputs are written;
* ``stream_linear`` applies one such layer to many rows, with the same sums as the fused step.
"""

STREAM_GEMV_SOURCE = r"""
#include <omp.h>

namespace fused {


constexpr int64_t kBlock = 64;

static inline float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
static inline uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}
// float -> bfloat16 bits, rounded to nearest even (as torch's conversion; NaN stays NaN)
static inline uint32_t bf16_bits(float value) {
  if (std::isnan(value)) return 0x7FC0u;
  const uint32_t bits = float_bits(value);
  return (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
}

// How one row of inputs was quantised to uint8 for int8 weights: x ~ scale (u - zero).
struct RowQuant {
  float scale = 1.f;
  int32_t zero = 0;
};

// The weight streams hold 32-bit elements; an Op says what one element is and how it multiplies
// the matching element of the inputs (a row of x converted by Op::convert):
// * F32: one float32 weight per element, times one input;
// * BF16: two bfloat16 weights (inputs k and k + 1; the first in the low half) per element, times
//   the two inputs rounded to bfloat16 (vdpbf16ps: acc += w0 x0 + w1 x1);
// * I8: four int8 weights (inputs 4e..4e+3, the first in the low byte) per element, times the
//   inputs quantised to uint8 per row (asymmetric: one scale and zero point per row), summed
//   exactly in int32 (vpdpbusd); Op::dequantize turns the sums into floats with the weights' scale
//   per output and their column sums (the zero point's share). Other Ops leave the sums as they are.
// Op::accumulate is the scalar multiply-add of the builds without AVX-512.

// The float Ops' shared parts: inputs converted element by element (Op::input), sums already floats.
template <typename Op>
struct FloatSums {
  static inline void convert(const float* x, int64_t K, float* dst, RowQuant&) {
    for (int64_t e = 0; e < (K + Op::kInputs - 1) / Op::kInputs; ++e) dst[e] = Op::input(x, e, K);
  }
  static inline void dequantize(float*, int64_t, const RowQuant&, const float*, int64_t, int64_t) {}
};

struct F32 : FloatSums<F32> {
  static constexpr int64_t kInputs = 1;  // inputs per element
  static constexpr bool kVector = true;  // has madd where AVX-512 is compiled in
  static inline float input(const float* x, int64_t e, int64_t) { return x[e]; }
  static inline float accumulate(float y, float w, float x) { return y + w * x; }
#if defined(__AVX512F__)
  static inline __m512 madd(__m512 w, __m512 x, __m512 acc) { return _mm512_fmadd_ps(w, x, acc); }
#endif
};
struct BF16 : FloatSums<BF16> {
  static constexpr int64_t kInputs = 2;
  static constexpr bool kVector = true;
  static inline float input(const float* x, int64_t e, int64_t K) {
    const uint32_t low = bf16_bits(x[2 * e]), high = 2 * e + 1 < K ? bf16_bits(x[2 * e + 1]) : 0u;
    return bits_float(low | (high << 16));
  }
  static inline float accumulate(float y, float w, float x) {
    const uint32_t wb = float_bits(w), xb = float_bits(x);
    return y + (bits_float(wb << 16) * bits_float(xb << 16) + bits_float(wb & 0xFFFF0000u) * bits_float(xb & 0xFFFF0000u));
  }
#if defined(__AVX512BF16__)
  static inline __m512 madd(__m512 w, __m512 x, __m512 acc) {
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(w), reinterpret_cast<__m512bh&>(x));
  }
#elif defined(__AVX512F__)
  static inline __m512 madd(__m512 w, __m512 x, __m512 acc) {  // without AVX512-BF16: the two products in turn
    const __m512i wi = _mm512_castps_si512(w), xi = _mm512_castps_si512(x), high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(wi, 16)), _mm512_castsi512_ps(_mm512_slli_epi32(xi, 16)), acc);
    return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(wi, high)), _mm512_castsi512_ps(_mm512_and_si512(xi, high)), acc);
  }
#endif
};
struct I8 {
  static constexpr int64_t kInputs = 4;
#if defined(__AVX512VNNI__) || defined(__AVX512BW__)
  static constexpr bool kVector = true;
#else
  static constexpr bool kVector = false;
#endif
  // x [K] -> uint8 quadruples: zero point and scale from the row's range (0 included), round to
  // nearest even, as quantize_inputs in speechkit.nn.fused_decode
  static inline void convert(const float* x, int64_t K, float* dst, RowQuant& q) {
    float low = 0.f, high = 0.f;
    int64_t k = 0;
#if defined(__AVX512F__)
    __m512 lows = _mm512_setzero_ps(), highs = _mm512_setzero_ps();
    for (; k + 16 <= K; k += 16) {
      const __m512 v = _mm512_loadu_ps(x + k);
      lows = _mm512_min_ps(lows, v), highs = _mm512_max_ps(highs, v);
    }
    low = _mm512_reduce_min_ps(lows), high = _mm512_reduce_max_ps(highs);
#endif
    for (; k < K; ++k) low = std::min(low, x[k]), high = std::max(high, x[k]);
    float scale = (high - low) / 255.f;
    if (!(scale > 0.f)) scale = 1.f;
    const float zero = std::nearbyint(-low / scale);
    q.scale = scale, q.zero = static_cast<int32_t>(zero);
    int64_t e = 0;
#if defined(__AVX512F__)
    // 16 inputs -> 4 elements: the same division and rounding as below, lane by lane
    const __m512 scales = _mm512_set1_ps(scale), zeros = _mm512_set1_ps(zero);
    const __m512 top = _mm512_set1_ps(255.f), bottom = _mm512_setzero_ps();
    alignas(16) uint32_t quads[4];
    for (; 4 * e + 16 <= K; e += 4) {
      const __m512 r = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(x + 4 * e), scales),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512 u = _mm512_min_ps(top, _mm512_max_ps(bottom, _mm512_add_ps(r, zeros)));
      _mm_store_si128(reinterpret_cast<__m128i*>(quads), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(u)));
      for (int i = 0; i < 4; ++i) dst[e + i] = bits_float(quads[i]);
    }
#endif
    for (; e < (K + 3) / 4; ++e) {
      uint32_t bits = 0;
      for (int64_t i = 0; i < 4 && 4 * e + i < K; ++i) {
        const float u = std::min(255.f, std::max(0.f, std::nearbyint(x[4 * e + i] / scale) + zero));
        bits |= static_cast<uint32_t>(u) << (8 * i);
      }
      dst[e] = bits_float(bits);
    }
  }
  static inline float accumulate(float y, float w, float x) {  // int32 sums kept in the float's bits
    const uint32_t wb = float_bits(w), xb = float_bits(x);
    int32_t dot = 0;
    for (int i = 0; i < 4; ++i)
      dot += static_cast<int32_t>(static_cast<int8_t>(wb >> (8 * i))) * static_cast<int32_t>((xb >> (8 * i)) & 0xFFu);
    return bits_float(float_bits(y) + static_cast<uint32_t>(dot));
  }
  // y [n] int32 sums of outputs n0.. -> floats: (sum - zero colsum) (scale weight_scale); terms =
  // [bias; weight scale; column sum] [3, N]
  static inline void dequantize(float* y, int64_t n, const RowQuant& q, const float* terms, int64_t N, int64_t n0) {
    int64_t j = 0;
#if defined(__AVX512F__)
    const __m512i zero = _mm512_set1_epi32(q.zero);
    const __m512 scale = _mm512_set1_ps(q.scale);
    for (; j + 16 <= n; j += 16) {  // as below: int32 sum minus zero x column sum, then the scales
      const __m512i columns = _mm512_cvtps_epi32(_mm512_loadu_ps(terms + 2 * N + n0 + j));
      const __m512i sum = _mm512_sub_epi32(_mm512_loadu_si512(y + j), _mm512_mullo_epi32(zero, columns));
      _mm512_storeu_ps(y + j, _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(scale, _mm512_loadu_ps(terms + N + n0 + j))));
    }
#endif
    for (; j < n; ++j) {
      const int32_t sum = static_cast<int32_t>(float_bits(y[j])) - q.zero * static_cast<int32_t>(terms[2 * N + n0 + j]);
      y[j] = static_cast<float>(sum) * (q.scale * terms[N + n0 + j]);
    }
  }
#if defined(__AVX512VNNI__)
  static inline __m512 madd(__m512 w, __m512 x, __m512 acc) {  // acc += u0 w0 + u1 w1 + u2 w2 + u3 w3 (int32)
    return _mm512_castsi512_ps(_mm512_dpbusd_epi32(_mm512_castps_si512(acc), _mm512_castps_si512(x), _mm512_castps_si512(w)));
  }
#elif defined(__AVX512BW__)
  static inline __m512 madd(__m512 w, __m512 x, __m512 acc) {  // without VNNI: even and odd bytes as 16-bit pairs
    const __m512i wi = _mm512_castps_si512(w), xi = _mm512_castps_si512(x);
    const __m512i x_even = _mm512_and_si512(xi, _mm512_set1_epi16(0x00FF)), x_odd = _mm512_srli_epi16(xi, 8);
    const __m512i w_even = _mm512_srai_epi16(_mm512_slli_epi16(wi, 8), 8), w_odd = _mm512_srai_epi16(wi, 8);
    const __m512i sums = _mm512_add_epi32(_mm512_madd_epi16(x_even, w_even), _mm512_madd_epi16(x_odd, w_odd));
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(acc), sums));
  }
#endif
};

// y[r, 0:16V] += sum_{e in [e0, e1)} w[e, 0:16V] * x[r, e] (Op's product) for R rows of x (element
// (r, e) at x[r * xs + e * es]), where w points at a stream block [E, 64] or at its second half of
// columns (V = 2) and y at the matching outputs of each row (row stride 64; y starts from zeros when
// e0 == 0). R x V accumulator vectors stay in registers: V = 4 (a whole block) for up to 6 rows, V = 2
// (half a block) for 7-8 rows, which then take a chunk in two half passes instead of a pass of 6 and a
// pass of 1-2. Every output is one chain of multiply-adds in input order whatever R, V and the chunks
// are, so a sequence's result does not depend on its batch. Meanwhile up to lines_per_e cache lines
// per element from [prefetch, prefetch_end) are fetched into L2, and half passes (V = 2), which read
// their chunk from L2, fetch its lines 8 elements ahead into L1 (1-1.5 % off a batch-8 step).
template <typename Op, int R, int V>
static inline void gemv_pass(const float* w, const float* x, int64_t xs, int64_t es, int64_t e0, int64_t e1, float* y,
                             const char* prefetch, const char* prefetch_end, int64_t lines_per_e) {
#if defined(__AVX512F__)
  if constexpr (Op::kVector) {
    __m512 acc[R][V];
    for (int r = 0; r < R; ++r)
      for (int i = 0; i < V; ++i) acc[r][i] = e0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(y + r * kBlock + 16 * i);
    w += e0 * kBlock;
    for (int64_t e = e0; e < e1; ++e, w += kBlock) {
      for (int64_t line = 0; line < lines_per_e && prefetch < prefetch_end; ++line, prefetch += 64)
        _mm_prefetch(prefetch, _MM_HINT_T1);
      if constexpr (V == 2) {  // half passes read their chunk from L2: its lines 8 elements ahead into L1
        _mm_prefetch(reinterpret_cast<const char*>(w + 8 * kBlock), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(w + 8 * kBlock + 16), _MM_HINT_T0);
      }
      __m512 weights[V];
      for (int i = 0; i < V; ++i) weights[i] = _mm512_loadu_ps(w + 16 * i);
      for (int r = 0; r < R; ++r) {
        const __m512 xe = _mm512_set1_ps(x[r * xs + e * es]);
        for (int i = 0; i < V; ++i) acc[r][i] = Op::madd(weights[i], xe, acc[r][i]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int i = 0; i < V; ++i) _mm512_storeu_ps(y + r * kBlock + 16 * i, acc[r][i]);
    return;
  }
#endif
  (void)prefetch, (void)prefetch_end, (void)lines_per_e;
  if (e0 == 0)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 16 * V; ++j) y[r * kBlock + j] = 0.f;
  w += e0 * kBlock;
  for (int64_t e = e0; e < e1; ++e, w += kBlock)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 16 * V; ++j) y[r * kBlock + j] = Op::accumulate(y[r * kBlock + j], w[j], x[r * xs + e * es]);
}

enum class Epilogue { kBias, kResidual, kGelu, kGeluTanh };

// dst[e, r] = src[r, e] for rows r < B of E elements (row stride src_stride), dst [E, B]. Eight rows
// move as 8 x 8 tiles in registers; otherwise (and for the last E % 8) element by element, in
// dst's order.
static void transpose_rows(const float* src, int64_t B, int64_t E, int64_t src_stride, float* dst) {
  int64_t e = 0;
#if defined(__AVX512F__)
  if (B == 8) {
    for (; e + 8 <= E; e += 8) {
      __m256 r[8], t[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride + e);
      for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
      for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44), r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44), r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
      }
      // r[0..3]: elements e+0, e+1, e+2, e+3 of rows 0-3 | e+4.. of rows 0-3 in the high lanes; r[4..7]: rows 4-7
      for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(dst + (e + i) * 8, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (e + i + 4) * 8, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
      }
    }
  }
#endif
  for (; e < E; ++e)
    for (int64_t r = 0; r < B; ++r) dst[e * B + r] = src[r * src_stride + e];
}

static inline float gelu(float v) { return 0.5f * v * (1.f + std::erf(v * 0.70710678118654752f)); }
static inline float gelu_tanh(float v) {
  return 0.5f * v * (1.f + std::tanh(0.79788456080286536f * (v + 0.044715f * v * v * v)));
}

#if defined(__AVX512F__)
// erf of 16 floats: Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7), odd symmetry.
static inline __m512 erf16(__m512 x) {
  const __m512 a = _mm512_abs_ps(x);
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.f)));
  __m512 p = _mm512_set1_ps(1.061405429f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
  p = _mm512_mul_ps(p, t);
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
  const __m512 r = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.f));  // erf(|x|)
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), _mm512_and_si512(_mm512_castps_si512(x),
                                                                                      _mm512_set1_epi32(0x80000000))));
}

// tanh of 16 floats: (1 - e) / (1 + e) with e = exp(-2 |x|), odd symmetry.
static inline __m512 tanh16(__m512 x) {
  const __m512 e = exp16(_mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(-2.f)));
  const __m512 r = _mm512_div_ps(_mm512_sub_ps(_mm512_set1_ps(1.f), e), _mm512_add_ps(_mm512_set1_ps(1.f), e));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), _mm512_and_si512(_mm512_castps_si512(x),
                                                                                      _mm512_set1_epi32(0x80000000))));
}
#endif

// out[0:n] (=, +=, = gelu) y[0:n] + bias[0:n], n <= 64
static inline void finish(const float* y, const float* bias, float* out, int64_t n, Epilogue epilogue) {
#if defined(__AVX512F__)
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - j)) - 1u);
    const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + j), _mm512_maskz_loadu_ps(m, bias + j));
    __m512 r;
    switch (epilogue) {
      case Epilogue::kBias: r = v; break;
      case Epilogue::kResidual: r = _mm512_add_ps(_mm512_maskz_loadu_ps(m, out + j), v); break;
      case Epilogue::kGelu:
        r = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v),
                          _mm512_add_ps(_mm512_set1_ps(1.f), erf16(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f)))));
        break;
      default: {
        const __m512 cube = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
        const __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.79788456080286536f), _mm512_fmadd_ps(cube, _mm512_set1_ps(0.044715f), v));
        r = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), _mm512_add_ps(_mm512_set1_ps(1.f), tanh16(u)));
      }
    }
    _mm512_mask_storeu_ps(out + j, m, r);
  }
#else
  for (int64_t j = 0; j < n; ++j) {
    const float v = y[j] + bias[j];
    switch (epilogue) {
      case Epilogue::kBias: out[j] = v; break;
      case Epilogue::kResidual: out[j] += v; break;
      case Epilogue::kGelu: out[j] = gelu(v); break;
      case Epilogue::kGeluTanh: out[j] = gelu_tanh(v); break;
    }
  }
#endif
}

constexpr int kRows = 6;      // rows per pass (6 x 4 accumulators in registers)
constexpr int kHalfRows = 8;  // up to this many rows take a chunk in two half passes (8 x 2 accumulators)
constexpr int64_t kChunk = 128;  // elements per chunk when more rows than one pass: 32 KB of weights
// ... and for more than 8 rows (prompts, the NAR's passes, large batches): 256 KB of fp32 weights,
// still re-read from L2 by each group of 6 rows, with 8x fewer stores and reloads of the sums.
// stream_linear over 1095 rows took 3-6 % less time than with 128 (int8, bf16 and fp32 blocks);
// a batch-16 fused step 0.6 % less.
constexpr int64_t kLargeChunk = 1024;

// This thread's share of Y = X W^T + bias for B rows X [B, K] (blocks [nb t / nt, nb (t + 1) / nt) of
// the stream w [nb, E, 64], E = ceil(K / Op::kInputs) elements per output), finished by the epilogue:
// out = y (kBias), out += y (kResidual), out = gelu(y); out [B, N]. Up to 6 rows take one pass over
// each block, streaming it from memory. More rows take a block chunk by chunk, every group of 6 rows
// over a chunk before the next chunk (7-8 rows: two half passes, each with every row), so the weights
// are read from memory once and re-read from the L1/L2 caches; the passes over a chunk prefetch the
// next one meanwhile, so that the memory does not idle. The passes read X as Op's elements: as it
// is for float32 weights, else converted once per call into a per-thread buffer (bfloat16 pairs,
// uint8 quads); for 7-8 rows then transposed into another (transpose_rows), so that the rows'
// elements for one input share a cache line instead of 7-8 lines 4 K floats apart that compete for
// one L1 set.
template <typename Op>
static void gemv(const float* w, const float* bias, const float* x, int64_t B, int64_t K, int64_t N, float* out,
                 Epilogue epilogue, int t, int nt) {
  const int64_t blocks = (N + kBlock - 1) / kBlock, E = (K + Op::kInputs - 1) / Op::kInputs;
  const int64_t first = blocks * t / nt, last = blocks * (t + 1) / nt;
  const bool chunked = B > kRows, halves = chunked && B <= kHalfRows;
  const int64_t chunk = chunked ? (halves ? kChunk : kLargeChunk) : E;
  thread_local std::vector<float> y, operand, transposed;  // accumulators and inputs, kept per thread across calls
  thread_local std::vector<RowQuant> quant;
  y.resize(static_cast<size_t>(((B + kRows - 1) / kRows) * kRows * kBlock));
  quant.resize(static_cast<size_t>(B));
  const float* xe = x;
  int64_t xs = K, es = 1;
  if (Op::kInputs != 1) {  // rows of elements, [B, E]
    operand.resize(static_cast<size_t>(B * E));
    for (int64_t r = 0; r < B; ++r) Op::convert(x + r * K, K, operand.data() + r * E, quant[r]);
    xe = operand.data(), xs = E;
  }
  if (halves) {  // [E, B]: one input's elements of every row side by side
    transposed.resize(static_cast<size_t>(B * E));
    transpose_rows(xe, B, E, xs, transposed.data());
    xe = transposed.data(), xs = 1, es = B;
  }
  for (int64_t b = first; b < last; ++b) {
    const float* block = w + b * E * kBlock;
    const int64_t n0 = b * kBlock, count = std::min(kBlock, N - n0);
    for (int64_t e0 = 0; e0 < E; e0 += chunk) {
      const int64_t e1 = std::min(E, e0 + chunk);
      // the next chunk: of this block, else the start of the next one
      const char* next = reinterpret_cast<const char*>(block + e1 * kBlock);
      const int64_t next_e = e1 < E ? std::min(E, e1 + chunk) - e1 : (b + 1 < last ? std::min(E, chunk) : 0);
      const char* next_end = chunked ? next + next_e * kBlock * sizeof(float) : next;
      if (halves) {  // 7-8 rows: two half passes with every row
        const char* middle = next + (next_end - next) / 128 * 64;  // each prefetches half the next chunk
        for (int half = 0; half < 2; ++half) {
          const float* wh = block + half * (kBlock / 2);
          float* yh = y.data() + half * (kBlock / 2);
          const char* from = half == 0 ? next : middle;
          const char* to = half == 0 ? middle : next_end;
          const int64_t lines_per_e = ((to - from) / 64 + (e1 - e0) - 1) / (e1 - e0);  // spread evenly over e
          if (B == 7) gemv_pass<Op, 7, 2>(wh, xe, xs, es, e0, e1, yh, from, to, lines_per_e);
          else gemv_pass<Op, 8, 2>(wh, xe, xs, es, e0, e1, yh, from, to, lines_per_e);
        }
        continue;
      }
      for (int64_t r0 = 0; r0 < B; r0 += kRows) {
        const int64_t rows = std::min<int64_t>(kRows, B - r0);
        const float* xr = xe + r0 * xs;
        float* yr = y.data() + r0 * kBlock;
        switch (rows) {
          case 1: gemv_pass<Op, 1, 4>(block, xr, xs, es, e0, e1, yr, next, next_end, 2); break;
          case 2: gemv_pass<Op, 2, 4>(block, xr, xs, es, e0, e1, yr, next, next_end, 2); break;
          case 3: gemv_pass<Op, 3, 4>(block, xr, xs, es, e0, e1, yr, next, next_end, 2); break;
          case 4: gemv_pass<Op, 4, 4>(block, xr, xs, es, e0, e1, yr, next, next_end, 2); break;
          case 5: gemv_pass<Op, 5, 4>(block, xr, xs, es, e0, e1, yr, next, next_end, 2); break;
          default: gemv_pass<Op, 6, 4>(block, xr, xs, es, e0, e1, yr, next, next_end, 2); break;
        }
        next = std::min(next + (e1 - e0) * 128, next_end);
      }
    }
    for (int64_t r = 0; r < B; ++r) {
      Op::dequantize(y.data() + r * kBlock, count, quant[r], bias, N, n0);
      finish(y.data() + r * kBlock, bias + n0, out + r * N + n0, count, epilogue);
    }
  }
}

static const float* checked(const torch::Tensor& tensor, std::initializer_list<int64_t> shape, const char* what) {
  TORCH_CHECK(tensor.scalar_type() == torch::kFloat && tensor.is_contiguous() && tensor.device().is_cpu(),
              what, " must be a contiguous float32 CPU tensor");
  TORCH_CHECK(tensor.sizes() == c10::IntArrayRef(shape), what, " has shape ", tensor.sizes(), ", expected ", c10::IntArrayRef(shape));
  return tensor.data_ptr<float>();
}

enum class Weights { kF32, kBF16, kI8 };

static Weights weights_of(const torch::Tensor& blocks) {
  switch (blocks.scalar_type()) {
    case torch::kFloat: return Weights::kF32;
    case torch::kBFloat16: return Weights::kBF16;
    case torch::kChar: return Weights::kI8;
    default: TORCH_CHECK(false, "stream blocks must be float32, bfloat16 or int8, not ", blocks.scalar_type());
  }
  return Weights::kF32;
}

// A linear layer's stream blocks -> their 32-bit elements: float32 [ceil(N/64), K, 64], bfloat16
// [ceil(N/64), ceil(K/2), 64, 2] (pairs of inputs) or int8 [ceil(N/64), ceil(K/4), 64, 4] (quadruples).
static const float* checked_stream(const torch::Tensor& tensor, int64_t N, int64_t K, Weights kind, const char* what) {
  const int64_t blocks = (N + kBlock - 1) / kBlock;
  if (kind == Weights::kF32) return checked(tensor, {blocks, K, kBlock}, what);
  const int64_t inputs = kind == Weights::kBF16 ? 2 : 4;
  const auto dtype = kind == Weights::kBF16 ? torch::kBFloat16 : torch::kChar;
  TORCH_CHECK(tensor.scalar_type() == dtype && tensor.is_contiguous() && tensor.device().is_cpu(),
              what, " must be a contiguous ", dtype, " CPU tensor like the other weights");
  TORCH_CHECK(tensor.sizes() == c10::IntArrayRef({blocks, (K + inputs - 1) / inputs, kBlock, inputs}), what, " has shape ",
              tensor.sizes(), ", expected [", blocks, ", ", (K + inputs - 1) / inputs, ", ", kBlock, ", ", inputs, "]");
  return static_cast<const float*>(tensor.data_ptr());
}

// A stream layer's bias [N]; for int8 blocks its terms [3, N]: bias, weight scale per output, and
// the column sums of the int8 weights (exact in float32)
static const float* checked_terms(const torch::Tensor& tensor, int64_t N, Weights kind, const char* what) {
  if (kind == Weights::kI8) return checked(tensor, {3, N}, what);
  return checked(tensor, {N}, what);
}

// The layer's output count: the bias's length (its last dimension for int8 terms)
static int64_t outputs_of(const torch::Tensor& terms) { return terms.dim() == 0 ? 0 : terms.size(terms.dim() - 1); }

}  // namespace fused

// Whether int8 stream blocks multiply with vector instructions here (AVX512-VNNI, or AVX512-BW).
bool int8_stream_vectorized() { return fused::I8::kVector; }

// y [M, N] = x [M, K] W^T + bias for a linear layer kept as stream blocks (float32 [ceil(N/64), K, 64],
// bfloat16 [ceil(N/64), ceil(K/2), 64, 2] or int8 [ceil(N/64), ceil(K/4), 64, 4] with bias = its terms
// [3, N]): prefill and the layer-by-layer path, the same sums as the fused step, so both agree exactly.
// activation: 0 none, 1 GELU (erf), 2 GELU (tanh), applied to y as it is written.
torch::Tensor stream_linear(torch::Tensor x, torch::Tensor blocks, torch::Tensor bias, int64_t activation) {
  TORCH_CHECK(x.dim() == 2, "x must be [M, K]");
  TORCH_CHECK(activation >= 0 && activation <= 2, "activation must be 0 (none), 1 (GELU) or 2 (tanh GELU)");
  const fused::Epilogue epilogue =
      activation == 0 ? fused::Epilogue::kBias : (activation == 1 ? fused::Epilogue::kGelu : fused::Epilogue::kGeluTanh);
  const int64_t M = x.size(0), K = x.size(1), N = fused::outputs_of(bias);
  const fused::Weights kind = fused::weights_of(blocks);
  const float* xp = fused::checked(x, {M, K}, "x");
  const float* wp = fused::checked_stream(blocks, N, K, kind, "blocks");
  const float* bp = fused::checked_terms(bias, N, kind, "bias");
  auto out = torch::empty({M, N}, x.options());
  float* op = out.data_ptr<float>();
  const int requested = std::max(1, at::get_num_threads());
  // rows in slabs, so that a block is re-read from L2 (not memory) by the passes over one slab
  constexpr int64_t kSlab = 128;
  const int64_t blocks_count = blocks.size(0);
  const int threads = static_cast<int>(std::min<int64_t>(requested, blocks_count));
#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    for (int64_t r0 = 0; r0 < M; r0 += kSlab) {
      const int64_t rows = std::min(kSlab, M - r0);
      if (kind == fused::Weights::kBF16)
        fused::gemv<fused::BF16>(wp, bp, xp + r0 * K, rows, K, N, op + r0 * N, epilogue, t, nt);
      else if (kind == fused::Weights::kI8)
        fused::gemv<fused::I8>(wp, bp, xp + r0 * K, rows, K, N, op + r0 * N, epilogue, t, nt);
      else
        fused::gemv<fused::F32>(wp, bp, xp + r0 * K, rows, K, N, op + r0 * N, epilogue, t, nt);
    }
  }
  return out;
}
"""
