"""C++ of the decoding-attention kernel (:mod:`speechkit.nn.decode_kernel`, which documents it and
builds it together with :mod:`speechkit.nn.stream_gemv_source` and :mod:`speechkit.nn.fused_step_source`):

* ``attend``: one (sequence, head) over an fp32, bf16, int8 or int4 cache; the blocked AVX-512
  path for head sizes 16..128 (16 keys at a time, a vectorised exponential), integer products for
  int8 and int4 caches (``vpdpwssd`` with an int16 query and int16 value weights), scalar loops
  elsewhere;
* ``decode_attention``: ``attend`` for every (sequence, head) of a batch on torch's threads;
* ``quantize_row`` / ``quantize_row4`` and ``store_quantized``: an int8 or int4 cache's write of
  one position, rounding exactly as :func:`speechkit.nn.decode_kernel.quantize_rows`.
"""

DECODE_KERNEL_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

static inline float load(const float* p, int64_t i) { return p[i]; }
static inline float load(const int8_t* p, int64_t i) { return static_cast<float>(p[i]); }
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
static inline __m512 load16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
static inline __m512 load16(const uint16_t* p) {
  __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
// 16 floats -> round-half-even(x / divisor) clamped to [-limit, limit], as int32 lanes (the roundings
// of the int8 and int4 cache writes and of the int16 query and weights)
static inline __m512i levels16(const float* x, __m512 divisor, float limit) {
  const __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(x), divisor), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_set1_ps(limit), _mm512_max_ps(v, _mm512_set1_ps(-limit))));
}
#endif

// max |x[i]| over [0, n) (16 at a time where AVX-512 is compiled in; the same value either way)
static inline float max_abs(const float* x, int64_t n) {
  float top = 0.f;
  int64_t i = 0;
#if defined(__AVX512F__)
  __m512 tops = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) tops = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), tops);
  top = _mm512_reduce_max_ps(tops);
#endif
  for (; i < n; ++i) top = std::max(top, std::fabs(x[i]));
  return top;
}

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

// The cache lines of the next (sequence, head) a thread will attend, fetched into L2 while it
// attends the current one: the next task's keys, key scales, values and value scales, in that
// order. The current task's loops call fetch(bytes) with the bytes they have just read, and the
// next task's lines go out at 1.5x that pace (all of them by two thirds of the current task), so
// the memory keeps streaming while the arithmetic runs: with an int4 cache batch-8 steps take
// 7-11 % less time (docs/performance.md; at 1x or 2x the pace 1-3 % more than at 1.5x, at 0.75x
// more still). Only int8 and int4 caches fetch (NextTask::of): with a bf16 cache, 4x the bytes
// of int4 for the same arithmetic, the fetches made batch 8 3 % slower. A default NextTask
// fetches nothing.
struct NextTask {
  const char* runs[4] = {nullptr, nullptr, nullptr, nullptr};
  int64_t left[4] = {0, 0, 0, 0};  // bytes of each run not fetched yet
  int run = 4;                     // the run being fetched (4: done)
  int64_t credit = 0;              // bytes read by the current task, not yet matched by fetches

  NextTask() = default;
  // keys / values: S contiguous rows of row_bytes each; scales: S floats (or null)
  NextTask(const void* keys, const float* key_scales, const void* values, const float* value_scales, int64_t S,
           int64_t row_bytes) : run(0) {
    const void* starts[4] = {keys, key_scales, values, value_scales};
    const int64_t lengths[4] = {S * row_bytes, S * 4, S * row_bytes, S * 4};
    for (int i = 0; i < 4; ++i) {
      runs[i] = static_cast<const char*>(starts[i]);
      left[i] = starts[i] == nullptr || S <= 0 ? 0 : lengths[i];
    }
  }
  // The next task of a cache of T (element type of its rows); nothing to fetch for float caches.
  template <typename T>
  static NextTask of(const T* keys, const float* key_scales, const T* values, const float* value_scales, int64_t S,
                     int64_t row_bytes) {
    if (!std::is_same<T, int8_t>::value && !std::is_same<T, uint8_t>::value) return NextTask();
    return NextTask(keys, key_scales, values, value_scales, S, row_bytes);
  }
  inline void fetch(int64_t bytes) {
    credit += bytes + bytes / 2;
    while (credit >= 64 && run < 4) {
      if (left[run] <= 0) { ++run; continue; }
      __builtin_prefetch(runs[run], 0, 2);  // into L2 (prefetcht1 on x86)
      runs[run] += 64, left[run] -= 64, credit -= 64;
    }
  }
};

template <typename T>
static void attend_one(const float* q, const T* k, const T* v, const bool* valid, const float* k_scales,
                       const float* v_scales, int64_t S, int64_t D, int64_t k_stride, int64_t v_stride, float scale,
                       float* out, float* scores) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float top = neg_inf;
  for (int64_t s = 0; s < S; ++s) {
    if (valid != nullptr && !valid[s]) { scores[s] = neg_inf; continue; }
    const float score = dot(q, k + s * k_stride, D) * scale * (k_scales == nullptr ? 1.f : k_scales[s]);
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
    const float p = scores[s] * inv * (v_scales == nullptr ? 1.f : v_scales[s]);
    if (p != 0.f) axpy(p, v + s * v_stride, out, D);
  }
}

#if defined(__AVX512F__)
// exp of 16 floats (x <= 0 here: scores minus their maximum): 2^n * e^r with |r| <= ln2/2 and a
// degree-7 Taylor polynomial for e^r (relative error ~1e-7, like std::exp in float).
static inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-88.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.4426950408889634f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.6931471805599453f), x);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// 16 vectors -> one vector whose lane r is the sum of the lanes of a[r] (a transposing reduction:
// 15 shuffle+add pairs instead of 16 horizontal sums); ``add`` adds two vectors (float or int32
// lanes, the shuffles move bits).
template <typename Add>
static inline __m512 sum_lanes16(const __m512* a, Add add) {
  __m512 pairs[8], quads[4];
  for (int i = 0; i < 8; ++i) pairs[i] = add(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {
    const __m512d x = _mm512_castps_pd(pairs[2 * i]), y = _mm512_castps_pd(pairs[2 * i + 1]);
    quads[i] = add(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  const __m512 low = add(_mm512_shuffle_f32x4(quads[0], quads[1], 0x88), _mm512_shuffle_f32x4(quads[0], quads[1], 0xDD));
  const __m512 high = add(_mm512_shuffle_f32x4(quads[2], quads[3], 0x88), _mm512_shuffle_f32x4(quads[2], quads[3], 0xDD));
  return add(_mm512_shuffle_f32x4(low, high, 0x88), _mm512_shuffle_f32x4(low, high, 0xDD));
}
static inline __m512 add_floats(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
static inline __m512 add_int32s(__m512 a, __m512 b) {
  return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

// The query of one (sequence, head), D = 16 * NV, times the softmax scale, and the scores
// q . k of a key row or of 16 consecutive ones (before the int8 cache's per-position scales).
template <typename T, int NV, bool kIntegerDots = false>
struct BlockQuery {
  __m512 query[NV];
  BlockQuery(const float* q, float scale) {
    for (int i = 0; i < NV; ++i) query[i] = _mm512_mul_ps(_mm512_loadu_ps(q + 16 * i), _mm512_set1_ps(scale));
  }
  inline __m512 row_products(const T* row) const {
    __m512 a = _mm512_mul_ps(query[0], load16(row));
    for (int i = 1; i < NV; ++i) a = _mm512_fmadd_ps(query[i], load16(row + 16 * i), a);
    return a;
  }
  inline float score(const T* row) const { return _mm512_reduce_add_ps(row_products(row)); }
  inline __m512 scores16(const T* k, int64_t stride) const {
    __m512 acc[16];
    for (int r = 0; r < 16; ++r) acc[r] = row_products(k + r * stride);
    return sum_lanes16(acc, add_floats);
  }
};

#if defined(__AVX512BW__)
// int8 keys, D a multiple of 32: the query is rounded to int16 (step = max |q| / 32767, a relative
// error below 2e-5 of its largest element, far inside the keys' own int8 rounding) and each row's
// products are exact int32 sums of pairs (vpdpwssd), 2 instructions per 32 elements instead of 6
// (widen, convert, multiply-add per 16) in floats; the transposing reduction adds int32 lanes.
static inline __m512i dot_pairs(__m512i acc, __m512i a, __m512i b) {
#if defined(__AVX512VNNI__)
  return _mm512_dpwssd_epi32(acc, a, b);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}

// x [0, n) -> out int16 in steps of max |x| / 32767 (1 for an all-zero x), rounded to nearest even
// (16 at a time); returns the step. The query of the int8 scores and the weights of the int8 values.
static inline float round_to_int16(const float* x, int64_t n, int16_t* out) {
  const float top = max_abs(x, n);
  const float step = top > 0.f ? top / 32767.f : 1.f;
  const __m512 divisor = _mm512_set1_ps(step);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtsepi32_epi16(levels16(x + i, divisor, 32767.f)));
  for (; i < n; ++i) out[i] = static_cast<int16_t>(std::nearbyint(x[i] / step));
  return step;
}

// The query of one (sequence, head), D elements, times the softmax scale, rounded to int16 (see
// round_to_int16); returns the step. Shared by the int8 and int4 keys.
static inline float rounded_query(const float* q, float scale, int64_t D, int16_t* rounded) {
  alignas(64) float scaled[128];
  for (int64_t i = 0; i < D; i += 16) _mm512_store_ps(scaled + i, _mm512_mul_ps(_mm512_loadu_ps(q + i), _mm512_set1_ps(scale)));
  return round_to_int16(scaled, D, rounded);
}

// score and scores16 of integer keys from Keys::row_products (int32 lanes whose sum times the
// query's step is the score)
template <typename Keys, typename T>
struct IntegerScores {
  inline float score(const T* row) const {
    const Keys& keys = static_cast<const Keys&>(*this);
    return static_cast<float>(_mm512_reduce_add_epi32(keys.row_products(row))) * keys.step;
  }
  inline __m512 scores16(const T* k, int64_t stride) const {
    const Keys& keys = static_cast<const Keys&>(*this);
    __m512 acc[16];
    for (int r = 0; r < 16; ++r) acc[r] = _mm512_castsi512_ps(keys.row_products(k + r * stride));
    const __m512i sums = _mm512_castps_si512(sum_lanes16(acc, add_int32s));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(sums), _mm512_set1_ps(keys.step));
  }
};

template <int NV>
struct BlockQuery<int8_t, NV, true> : IntegerScores<BlockQuery<int8_t, NV, true>, int8_t> {
  static constexpr int kPairs = NV / 2;  // 32 int16 elements per vector
  __m512i query[kPairs];
  float step;  // score = step * sum(query16 * key8)
  BlockQuery(const float* q, float scale) {
    alignas(64) int16_t rounded[16 * NV];
    step = rounded_query(q, scale, 16 * NV, rounded);
    for (int i = 0; i < kPairs; ++i) query[i] = _mm512_load_si512(rounded + 32 * i);
  }
  inline __m512i row_products(const int8_t* row) const {
    __m512i a = _mm512_setzero_si512();
    for (int i = 0; i < kPairs; ++i)
      a = dot_pairs(a, _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * i))), query[i]);
    return a;
  }
};

// An int4 row: D / 2 bytes, byte j holding element j in its low nibble and element j + D/2 in its
// high one (two's complement, -7..7). 32 bytes widened to int16 -> their low and high nibbles,
// sign-extended (<< 12 then >> 12; >> 4).
static inline __m512i low_nibbles(__m512i widened) { return _mm512_srai_epi16(_mm512_slli_epi16(widened, 12), 12); }
static inline __m512i high_nibbles(__m512i widened) { return _mm512_srai_epi16(widened, 4); }
static inline __m512i widen32(const uint8_t* p) {
  return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// int4 keys, D a multiple of 64: the query rounded to int16 as for int8 keys; each 32 bytes of a
// row (64 elements) take 6 instructions: widen, 3 shifts, 2 vpdpwssd (int8: 4 for 64 elements).
template <int NV>
struct BlockQuery<uint8_t, NV, true> : IntegerScores<BlockQuery<uint8_t, NV, true>, uint8_t> {
  static constexpr int kChunks = NV / 4;  // 32 bytes = 64 elements
  __m512i low[kChunks], high[kChunks];    // the query's elements of the low and of the high nibbles
  float step;
  BlockQuery(const float* q, float scale) {
    alignas(64) int16_t rounded[16 * NV];
    step = rounded_query(q, scale, 16 * NV, rounded);
    for (int c = 0; c < kChunks; ++c) {
      low[c] = _mm512_load_si512(rounded + 32 * c);
      high[c] = _mm512_load_si512(rounded + 8 * NV + 32 * c);
    }
  }
  inline __m512i row_products(const uint8_t* row) const {
    __m512i a = _mm512_setzero_si512();
    for (int c = 0; c < kChunks; ++c) {
      const __m512i widened = widen32(row + 32 * c);
      a = dot_pairs(a, low_nibbles(widened), low[c]);
      a = dot_pairs(a, high_nibbles(widened), high[c]);
    }
    return a;
  }
};
#endif

#if defined(__AVX512BW__)
// The weighted sum of int8 or int4 value rows, D = 16 * NV with NV a multiple of 4:
// out[d] = sum_s p[s] * value_scales[s] * v[s, d] / total. The weights w = p * scale are rounded
// to int16 in steps of max w / 32767 (an error below 2e-5 of the largest weight per position,
// inside the values' own rounding); two positions at a time, their rows' bytes interleaved into
// (v[s, d], v[s+1, d]) int16 pairs, are multiplied by the pair of weights with one vpdpwssd per 32
// elements (int8: 15 instructions per 64 elements of 2 positions instead of 26 in floats). The
// int32 sums are moved to floats every kFlush positions, before they could overflow
// (kFlush * 32767 * 127 < 2^31). The unpacking permutes the elements; Rows::element puts them back.
constexpr int64_t kFlush = 512;

// int8 rows: 64 bytes (elements) per chunk, 4 accumulators of 16 element pairs each
struct Int8Rows {
  using T = int8_t;
  template <int NV>
  static inline void accumulate(__m512i* acc, const int8_t* row0, const int8_t* row1, __m512i weights) {
    for (int c = 0; c < NV / 4; ++c) {
      const __m512i a = _mm512_loadu_si512(row0 + 64 * c);
      const __m512i b = row1 != nullptr ? _mm512_loadu_si512(row1 + 64 * c) : _mm512_setzero_si512();
      const __m512i low = _mm512_unpacklo_epi8(a, b), high = _mm512_unpackhi_epi8(a, b);
      acc[4 * c] = dot_pairs(acc[4 * c], _mm512_cvtepi8_epi16(_mm512_castsi512_si256(low)), weights);
      acc[4 * c + 1] = dot_pairs(acc[4 * c + 1], _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(low, 1)), weights);
      acc[4 * c + 2] = dot_pairs(acc[4 * c + 2], _mm512_cvtepi8_epi16(_mm512_castsi512_si256(high)), weights);
      acc[4 * c + 3] = dot_pairs(acc[4 * c + 3], _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(high, 1)), weights);
    }
  }
  // lane i of accumulator 4c + j holds element 64c + 32 (j & 1) + 8 (j >> 1) + 16 (i / 8) + i % 8
  static inline int64_t element(int c, int j, int i, int64_t) { return 64 * c + 32 * (j & 1) + 8 * (j >> 1) + 16 * (i / 8) + i % 8; }
};

// int4 rows (see low_nibbles): 32 bytes (64 elements) per chunk, 4 accumulators of 16 element pairs
struct Int4Rows {
  using T = uint8_t;
  template <int NV>
  static inline void accumulate(__m512i* acc, const uint8_t* row0, const uint8_t* row1, __m512i weights) {
    for (int c = 0; c < NV / 4; ++c) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row0 + 32 * c));
      const __m256i b = row1 != nullptr ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row1 + 32 * c))
                                        : _mm256_setzero_si256();
      const __m512i first = _mm512_cvtepi8_epi16(_mm256_unpacklo_epi8(a, b));
      const __m512i second = _mm512_cvtepi8_epi16(_mm256_unpackhi_epi8(a, b));
      acc[4 * c] = dot_pairs(acc[4 * c], low_nibbles(first), weights);
      acc[4 * c + 1] = dot_pairs(acc[4 * c + 1], high_nibbles(first), weights);
      acc[4 * c + 2] = dot_pairs(acc[4 * c + 2], low_nibbles(second), weights);
      acc[4 * c + 3] = dot_pairs(acc[4 * c + 3], high_nibbles(second), weights);
    }
  }
  // lane i of accumulator 4c + j: byte 32c + k of the rows, k = 8 (j >> 1) + i + 8 (i / 8) (the
  // 128-bit halves of the byte unpacking), its low nibble (even j: element 32c + k) or its high one
  // (odd j: element D/2 + 32c + k)
  static inline int64_t element(int c, int j, int i, int64_t D) {
    return (j & 1) * (D / 2) + 32 * c + 8 * (j >> 1) + i + 8 * (i / 8);
  }
};

template <typename Rows, int NV>
static void weighted_quantized_values(float* p, const float* v_scales, const typename Rows::T* v, int64_t S,
                                      int64_t stride, float inv_total, float* out, NextTask& next) {
  int64_t s = 0;
  for (; s + 16 <= S; s += 16) _mm512_storeu_ps(p + s, _mm512_mul_ps(_mm512_loadu_ps(p + s), _mm512_loadu_ps(v_scales + s)));
  for (; s < S; ++s) p[s] *= v_scales[s];
  // rounded weights as int16, two per int32 (position 2i low, 2i + 1 high), a zero past S
  thread_local std::vector<int32_t> pairs;
  pairs.assign(static_cast<size_t>((S + 1) / 2 + 16), 0);
  const float step = round_to_int16(p, S, reinterpret_cast<int16_t*>(pairs.data()));
  __m512 sums[NV];
  __m512i acc[NV];
  for (int j = 0; j < NV; ++j) sums[j] = _mm512_setzero_ps(), acc[j] = _mm512_setzero_si512();
  for (int64_t s0 = 0; s0 < S; s0 += kFlush) {
    const int64_t s1 = std::min(S, s0 + kFlush);
    for (s = s0; s < s1; s += 2) {
      next.fetch(2 * stride + 8);  // two rows of bytes and their scales
      const int32_t pair = pairs[s / 2];
      if (pair == 0) continue;  // masked (or negligible) positions: their values are not read
      const auto* row0 = v + s * stride;
      Rows::template accumulate<NV>(acc, row0, s + 1 < S ? row0 + stride : nullptr, _mm512_set1_epi32(pair));
    }
    for (int j = 0; j < NV; ++j) sums[j] = _mm512_add_ps(sums[j], _mm512_cvtepi32_ps(acc[j])), acc[j] = _mm512_setzero_si512();
  }
  alignas(64) float lanes[16];
  const __m512 factor = _mm512_set1_ps(step * inv_total);
  for (int c = 0; c < NV / 4; ++c)
    for (int j = 0; j < 4; ++j) {
      _mm512_store_ps(lanes, _mm512_mul_ps(sums[4 * c + j], factor));
      for (int i = 0; i < 16; ++i) out[Rows::element(c, j, i, 16 * NV)] = lanes[i];
    }
}
#endif

// One (sequence, head) with D = 16 * NV: scores 16 keys at a time, vectorised softmax, and the
// weighted sum of the values accumulated in registers.
template <typename T, int NV>
static void attend_blocked(const float* q, const T* k, const T* v, const bool* valid, const float* k_scales,
                           const float* v_scales, int64_t S, int64_t k_stride, int64_t v_stride, float scale,
                           float* out, float* scores, NextTask& next) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
#if defined(__AVX512BW__)
  const BlockQuery<T, NV, (std::is_same<T, int8_t>::value && NV % 2 == 0) || std::is_same<T, uint8_t>::value> query(q, scale);
#else
  const BlockQuery<T, NV> query(q, scale);
#endif
  const __m512 minus_inf = _mm512_set1_ps(neg_inf);
  __m512 top = minus_inf;
  int64_t s = 0;
  const int64_t block_bytes = 16 * k_stride * static_cast<int64_t>(sizeof(T)) + (k_scales != nullptr ? 64 : 0);
  for (; s + 16 <= S; s += 16) {
    next.fetch(block_bytes);
    __m512 block = query.scores16(k + s * k_stride, k_stride);
    if (k_scales != nullptr) block = _mm512_mul_ps(block, _mm512_loadu_ps(k_scales + s));
    if (valid != nullptr) {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
      const __m128i flags = _mm_loadu_si128(reinterpret_cast<const __m128i*>(valid + s));
      const __mmask16 keep = _mm_test_epi8_mask(flags, flags);  // one bit per non-zero bool
#else
      __mmask16 keep = 0;
      for (int r = 0; r < 16; ++r) keep |= static_cast<__mmask16>(valid[s + r] ? 1u << r : 0u);
#endif
      block = _mm512_mask_blend_ps(keep, minus_inf, block);
    }
    _mm512_storeu_ps(scores + s, block);
    top = _mm512_max_ps(top, block);
  }
  float best = _mm512_reduce_max_ps(top);
  for (; s < S; ++s) {
    float score = neg_inf;
    if (valid == nullptr || valid[s]) score = query.score(k + s * k_stride) * (k_scales == nullptr ? 1.f : k_scales[s]);
    scores[s] = score;
    best = score > best ? score : best;
  }
  if (best == neg_inf) {  // nothing to attend to: zeros (torch would give NaN)
    for (int64_t d = 0; d < 16 * NV; ++d) out[d] = 0.f;
    return;
  }
  const __m512 shift = _mm512_set1_ps(best);
  __m512 sum = _mm512_setzero_ps();
  for (s = 0; s + 16 <= S; s += 16) {
    const __m512 x = _mm512_loadu_ps(scores + s);
    const __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, minus_inf, _CMP_NEQ_OQ), exp16(_mm512_sub_ps(x, shift)));
    _mm512_storeu_ps(scores + s, e);
    sum = _mm512_add_ps(sum, e);
  }
  float total = _mm512_reduce_add_ps(sum);
  for (; s < S; ++s) {
    const float e = scores[s] == neg_inf ? 0.f : std::exp(scores[s] - best);
    scores[s] = e;
    total += e;
  }
#if defined(__AVX512BW__)
  if constexpr (std::is_same<T, int8_t>::value && NV % 4 == 0) {
    return weighted_quantized_values<Int8Rows, NV>(scores, v_scales, v, S, v_stride, 1.f / total, out, next);
  } else if constexpr (std::is_same<T, uint8_t>::value) {
    return weighted_quantized_values<Int4Rows, NV>(scores, v_scales, v, S, v_stride, 1.f / total, out, next);
  } else
#endif
  {
    __m512 acc[NV];
    for (int i = 0; i < NV; ++i) acc[i] = _mm512_setzero_ps();
    for (s = 0; s < S; ++s) {
      const float p = scores[s] * (v_scales == nullptr ? 1.f : v_scales[s]);
      if (p == 0.f) continue;  // masked (or negligible) positions: their values are not read
      const __m512 weight = _mm512_set1_ps(p);
      const T* row = v + s * v_stride;
      for (int i = 0; i < NV; ++i) acc[i] = _mm512_fmadd_ps(weight, load16(row + 16 * i), acc[i]);
    }
    const __m512 inv = _mm512_set1_ps(1.f / total);
    for (int i = 0; i < NV; ++i) _mm512_storeu_ps(out + 16 * i, _mm512_mul_ps(acc[i], inv));
  }
}
#endif

// Whether an int4 cache of head size D is attended here: AVX512-BW compiled in, D 64 or 128 (the
// callers check before they attend; elsewhere the cache is dequantised for torch's attention).
static bool int4_attention_supported(int64_t D) {
#if defined(__AVX512BW__)
  return D == 64 || D == 128;
#else
  (void)D;
  return false;
#endif
}

// The blocked kernel for head sizes 16..128 (multiples of 16) where AVX-512 is compiled in; the
// scalar loops otherwise (float32, bfloat16 and int8 caches).
template <typename T>
static void attend_any(const float* q, const T* k, const T* v, const bool* valid, const float* k_scales,
                       const float* v_scales, int64_t S, int64_t D, int64_t k_stride, int64_t v_stride, float scale,
                       float* out, float* scores, NextTask& next) {
#if defined(__AVX512F__)
  if (D % 16 == 0) {
    switch (D / 16) {
      case 1: return attend_blocked<T, 1>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
      case 2: return attend_blocked<T, 2>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
      case 3: return attend_blocked<T, 3>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
      case 4: return attend_blocked<T, 4>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
      case 5: return attend_blocked<T, 5>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
      case 6: return attend_blocked<T, 6>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
      case 7: return attend_blocked<T, 7>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
      case 8: return attend_blocked<T, 8>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
      default: break;
    }
  }
#endif
  (void)next;
  attend_one<T>(q, k, v, valid, k_scales, v_scales, S, D, k_stride, v_stride, scale, out, scores);
}

// One (sequence, head): attend_any, or for an int4 cache (T = uint8_t, rows packed as for
// low_nibbles) the blocked kernel, where int4_attention_supported(D). Meanwhile the blocked
// kernel fetches `next` (see NextTask).
template <typename T>
static void attend(const float* q, const T* k, const T* v, const bool* valid, const float* k_scales,
                   const float* v_scales, int64_t S, int64_t D, int64_t k_stride, int64_t v_stride, float scale,
                   float* out, float* scores, NextTask& next) {
  if constexpr (std::is_same<T, uint8_t>::value) {
#if defined(__AVX512BW__)
    if (D == 64) return attend_blocked<uint8_t, 4>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
    if (D == 128) return attend_blocked<uint8_t, 8>(q, k, v, valid, k_scales, v_scales, S, k_stride, v_stride, scale, out, scores, next);
#endif
    (void)q, (void)k, (void)v, (void)valid, (void)k_scales, (void)v_scales, (void)S, (void)k_stride, (void)v_stride, (void)scale;
    for (int64_t d = 0; d < D; ++d) out[d] = std::numeric_limits<float>::quiet_NaN();  // not reached (see above)
    (void)scores, (void)next;
    return;
  } else {
    attend_any(q, k, v, valid, k_scales, v_scales, S, D, k_stride, v_stride, scale, out, scores, next);
  }
}

template <typename T>
static void run(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                const c10::optional<torch::Tensor>& valid, const c10::optional<torch::Tensor>& k_scales,
                const c10::optional<torch::Tensor>& v_scales, torch::Tensor& out, const T* k_data, const T* v_data) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3), S = k.size(2);
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  const float* q_data = q.data_ptr<float>();
  float* out_data = out.data_ptr<float>();
  const bool* valid_data = valid.has_value() ? valid->data_ptr<bool>() : nullptr;
  const int64_t vb = valid.has_value() ? valid->stride(0) : 0;
  const float* ksc = k_scales.has_value() ? k_scales->data_ptr<float>() : nullptr;
  const float* vsc = v_scales.has_value() ? v_scales->data_ptr<float>() : nullptr;
  const int64_t ksb = ksc ? k_scales->stride(0) : 0, ksh = ksc ? k_scales->stride(1) : 0;
  const int64_t vsb = vsc ? v_scales->stride(0) : 0, vsh = vsc ? v_scales->stride(1) : 0;
  const auto ks = k.strides(), vs = v.strides();
  const int64_t row_bytes = k.size(3) * static_cast<int64_t>(sizeof(T));
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(S));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / H, h = task % H, nb = (task + 1) / H, nh = (task + 1) % H;
      NextTask next;
      if (task + 1 < end && ks[2] == k.size(3) && vs[2] == v.size(3))  // rows contiguous
        next = NextTask::of(k_data + nb * ks[0] + nh * ks[1], ksc == nullptr ? nullptr : ksc + nb * ksb + nh * ksh,
                        v_data + nb * vs[0] + nh * vs[1], vsc == nullptr ? nullptr : vsc + nb * vsb + nh * vsh, S,
                        row_bytes);
      attend<T>(q_data + (b * H + h) * D, k_data + b * ks[0] + h * ks[1], v_data + b * vs[0] + h * vs[1],
                valid_data == nullptr ? nullptr : valid_data + b * vb, ksc == nullptr ? nullptr : ksc + b * ksb + h * ksh,
                vsc == nullptr ? nullptr : vsc + b * vsb + h * vsh, S, D, ks[2], vs[2], scale,
                out_data + (b * H + h) * D, scores.data(), next);
    }
  });
}

static void check_scales(const c10::optional<torch::Tensor>& scales, const torch::Tensor& k) {
  TORCH_CHECK(scales.has_value(), "an int8 or int4 cache needs key and value scales");
  TORCH_CHECK(scales->dim() == 3 && scales->size(0) == k.size(0) && scales->size(1) == k.size(1) &&
              scales->size(2) == k.size(2) && scales->stride(2) == 1 && scales->scalar_type() == torch::kFloat,
              "scales must be FloatTensor[B, H, S] with a contiguous last dimension");
}

torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, c10::optional<torch::Tensor> valid,
                               c10::optional<torch::Tensor> k_scales, c10::optional<torch::Tensor> v_scales) {
  TORCH_CHECK(q.dim() == 4 && q.size(2) == 1, "query must be [B, H, 1, Dh]");
  TORCH_CHECK(k.dim() == 4 && v.sizes() == k.sizes(), "keys and values must be [B, H, S, Dh]");
  const bool int4 = k.scalar_type() == torch::kByte;  // int4 pairs: [B, H, S, Dh / 2] bytes
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) * (int4 ? 2 : 1) == q.size(3), "shapes disagree");
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
    run<float>(q, k, v, valid, k_scales, v_scales, out, k.data_ptr<float>(), v.data_ptr<float>());
  } else if (k.scalar_type() == torch::kBFloat16) {
    run<uint16_t>(q, k, v, valid, k_scales, v_scales, out, reinterpret_cast<const uint16_t*>(k.data_ptr<at::BFloat16>()),
                  reinterpret_cast<const uint16_t*>(v.data_ptr<at::BFloat16>()));
  } else if (int4) {
    TORCH_CHECK(int4_attention_supported(q.size(3)), "an int4 cache is attended here only with head size 64 or 128 and AVX512-BW");
    check_scales(k_scales, k);
    check_scales(v_scales, v);
    run<uint8_t>(q, k, v, valid, k_scales, v_scales, out, k.data_ptr<uint8_t>(), v.data_ptr<uint8_t>());
  } else {
    TORCH_CHECK(k.scalar_type() == torch::kChar, "the cache must be float32, bfloat16, int8 or int4 (uint8 pairs)");
    check_scales(k_scales, k);
    check_scales(v_scales, v);
    run<int8_t>(q, k, v, valid, k_scales, v_scales, out, k.data_ptr<int8_t>(), v.data_ptr<int8_t>());
  }
  return out;
}

// One row of D floats -> int8 (round-half-even(x / scale) clamped to [-127, 127]); returns the
// scale, max |x| / 127 (1 for an all-zero row), as quantize_rows computes it.
// (16 elements at a time where AVX-512 is compiled in: the same divisions and roundings.)
static float quantize_row(const float* row, int8_t* out, int64_t D) {
  float scale = max_abs(row, D) / 127.0f;
  if (!(scale > 0.f)) scale = 1.f;
  int64_t d = 0;
#if defined(__AVX512F__)
  const __m512 divisor = _mm512_set1_ps(scale);
  for (; d + 16 <= D; d += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + d), _mm512_cvtsepi32_epi8(levels16(row + d, divisor, 127.f)));
#endif
  for (; d < D; ++d) {
    const float v = std::nearbyint(row[d] / scale);
    out[d] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, v)));
  }
  return scale;
}

// One row of D floats (D even) -> int4 pairs: byte j = q[j] (low nibble) | q[j + D/2] (high nibble),
// q = round-half-even(x / scale) clamped to [-7, 7], two's complement; returns the scale, max |x| / 7
// (1 for an all-zero row), as quantize_rows(bits=4) computes it.
static float quantize_row4(const float* row, uint8_t* out, int64_t D) {
  float scale = max_abs(row, D) / 7.0f;
  if (!(scale > 0.f)) scale = 1.f;
  const int64_t half = D / 2;
  int64_t j = 0;
#if defined(__AVX512F__)
  const __m512 divisor = _mm512_set1_ps(scale);
  for (; j + 16 <= half; j += 16) {
    const __m512i bytes = _mm512_or_si512(_mm512_and_si512(levels16(row + j, divisor, 7.f), _mm512_set1_epi32(15)),
                                          _mm512_slli_epi32(levels16(row + half + j, divisor, 7.f), 4));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), _mm512_cvtepi32_epi8(bytes));  // the low 8 bits of each
  }
#endif
  for (; j < half; ++j) {
    const int lo = static_cast<int>(std::min(7.f, std::max(-7.f, std::nearbyint(row[j] / scale))));
    const int hi = static_cast<int>(std::min(7.f, std::max(-7.f, std::nearbyint(row[half + j] / scale))));
    out[j] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
  }
  return scale;
}

// A quantised cache's write of one position: rows src [B, H, D] (float32, any strides with a
// contiguous last dimension) -> dst, and scales [B, H]: an int8 dst [B, H, D] as quantize_row, an
// int4 dst (uint8 pairs [B, H, D / 2]) as quantize_row4 (both as quantize_rows).
void store_quantized(torch::Tensor src, torch::Tensor dst, torch::Tensor scales) {
  const bool int4 = dst.scalar_type() == torch::kByte;
  TORCH_CHECK(src.dim() == 3 && dst.dim() == 3 && dst.size(0) == src.size(0) && dst.size(1) == src.size(1) &&
              dst.size(2) * (int4 ? 2 : 1) == src.size(2), "src [B, H, D] and dst [B, H, D] (int8) or [B, H, D / 2] (int4) must agree");
  TORCH_CHECK(scales.dim() == 2 && scales.size(0) == src.size(0) && scales.size(1) == src.size(1), "scales must be [B, H]");
  TORCH_CHECK(src.scalar_type() == torch::kFloat && (int4 || dst.scalar_type() == torch::kChar) && scales.scalar_type() == torch::kFloat,
              "src float32, dst int8 or uint8 (int4 pairs), scales float32");
  TORCH_CHECK(src.stride(2) == 1 && dst.stride(2) == 1, "the last dimension must be contiguous");
  const int64_t B = src.size(0), H = src.size(1), D = src.size(2);
  const float* x = src.data_ptr<float>();
  float* sc = scales.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const float* row = x + b * src.stride(0) + h * src.stride(1);
      const int64_t at = b * dst.stride(0) + h * dst.stride(1);
      sc[b * scales.stride(0) + h * scales.stride(1)] =
          int4 ? quantize_row4(row, dst.data_ptr<uint8_t>() + at, D) : quantize_row(row, dst.data_ptr<int8_t>() + at, D);
    }
  }
}

bool int4_attention(int64_t head_dim) { return int4_attention_supported(head_dim); }
"""
