"""C++ of the attention of whole sequences in bfloat16 products (:mod:`speechkit.nn.bf16_attention`):
the NAR's Transformer layers, where every position attends to every other one, compiled with the
decoding kernels of :mod:`speechkit.nn.decode_kernel` (it uses their ``exp16``).

* the queries (times the softmax scale), keys and values of each (sequence, head) are rounded to
  bfloat16 once and packed for ``vdpbf16ps`` (32 multiply-adds of bfloat16 pairs into 16 float32
  sums per instruction, twice the rate of float32 FMAs): keys as blocks of 16 positions with the
  head's elements in pairs ([S/16, Dh/2, 16] pairs), values with positions in pairs ([S/2, Dh]
  pairs), queries as rows of pairs;
* 8 queries at a time: their scores against every key (a tile of 8 queries x 32 keys in 16
  registers), the softmax in float32 (masked keys -inf; the probabilities rounded to bfloat16
  pairs), and the probabilities times the values (8 queries x 32 elements in 16 registers); sums are
  float32 throughout, and the output is divided by the float32 sum of the probabilities;
* the groups of 8 queries are shared out between torch's threads, each (sequence, head) packed
  once beforehand; a head's packed keys and values (2 x S x Dh x 2 bytes) stay in L2 while its
  groups run.

Only where AVX512-BF16 is compiled in (``bf16_attention_supported``); elsewhere the caller uses
torch's attention.
"""

BF16_ATTENTION_SOURCE = r"""
#include <memory>

namespace bf16attn {

#if defined(__AVX512BF16__)
constexpr int kGroup = 8;    // queries per group
constexpr int kKeyBlock = 16;  // keys per packed block

// The packed operands of one (sequence, head): Dh = 2 * P elements, S keys, N queries.
struct Head {
  uint32_t* queries;  // [ceil(N / 8) * 8, P]: rows of pairs (times the softmax scale), zero rows past N
  uint32_t* keys;     // [blocks, P, 16]: key j of block kb in lane j, element pair p; blocks = ceil(S / 32) * 2
  uint32_t* values;   // [ceil(S / 32) * 16, Dh]: (value[2 i, d], value[2 i + 1, d]) at [i, d], zeros past S
};

// 16 floats (times scale) -> 16 bfloat16 in order, i.e. 8 pairs (rounded to nearest even)
static inline __m256i bf16x16(const float* x, __m512 scale) {
  const __m256bh rounded = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(x), scale));
  return reinterpret_cast<const __m256i&>(rounded);
}

// One (sequence, head): q [N, Dh], k / v [S, Dh] (row strides; elements contiguous) -> its Head
static void pack_head(const float* q, int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                      int64_t v_stride, int64_t N, int64_t S, int64_t Dh, float scale, const Head& head) {
  const int64_t P = Dh / 2, groups = (N + kGroup - 1) / kGroup, blocks = (S + 31) / 32 * 2, pairs = blocks * kKeyBlock / 2;
  const __m512 scaled = _mm512_set1_ps(scale), one = _mm512_set1_ps(1.f);
  for (int64_t i = 0; i < groups * kGroup; ++i)
    for (int64_t d = 0; d < Dh; d += 16) {
      uint32_t* dst = head.queries + i * P + d / 2;
      if (i < N) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), bf16x16(q + i * q_stride + d, scaled));
      else _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_setzero_si256());
    }
  alignas(64) uint32_t row[128];  // one key's P pairs (head size <= 256)
  for (int64_t s = 0; s < blocks * kKeyBlock; ++s) {
    for (int64_t d = 0; d < Dh; d += 16)
      _mm256_store_si256(reinterpret_cast<__m256i*>(row + d / 2), s < S ? bf16x16(k + s * k_stride + d, one) : _mm256_setzero_si256());
    uint32_t* dst = head.keys + (s / kKeyBlock) * P * kKeyBlock + s % kKeyBlock;
    for (int64_t p = 0; p < P; ++p) dst[p * kKeyBlock] = row[p];
  }
  for (int64_t i = 0; i < pairs; ++i)  // (row 2i, row 2i + 1) -> 16 pairs at a time
    for (int64_t d = 0; d < Dh; d += 16) {
      const __m256i low = 2 * i < S ? bf16x16(v + 2 * i * v_stride + d, one) : _mm256_setzero_si256();
      const __m256i high = 2 * i + 1 < S ? bf16x16(v + (2 * i + 1) * v_stride + d, one) : _mm256_setzero_si256();
      _mm512_storeu_si512(head.values + i * Dh + d,
                          _mm512_or_si512(_mm512_cvtepu16_epi32(low), _mm512_slli_epi32(_mm512_cvtepu16_epi32(high), 16)));
    }
}

static inline __m512bh as_pairs(__m512i x) { return reinterpret_cast<__m512bh&>(x); }

// scores [8, ld] <- the group's queries [8, P] . keys of blocks kb, kb + 1 (32 keys)
template <int P>
__attribute__((noinline)) static void score_tile(const uint32_t* queries, const uint32_t* keys, float* scores, int64_t ld) {
  __m512 acc[kGroup][2];
  for (int r = 0; r < kGroup; ++r) acc[r][0] = _mm512_setzero_ps(), acc[r][1] = _mm512_setzero_ps();
  for (int p = 0; p < P; ++p) {
    const __m512bh first = as_pairs(_mm512_loadu_si512(keys + p * kKeyBlock));
    const __m512bh second = as_pairs(_mm512_loadu_si512(keys + (P + p) * kKeyBlock));
    for (int r = 0; r < kGroup; ++r) {
      const __m512bh q = as_pairs(_mm512_set1_epi32(static_cast<int>(queries[r * P + p])));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], first, q);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], second, q);
    }
  }
  for (int r = 0; r < kGroup; ++r) {
    _mm512_storeu_ps(scores + r * ld, acc[r][0]);
    _mm512_storeu_ps(scores + r * ld + 16, acc[r][1]);
  }
}

// out[r, d0:d0+32] = inv[r] sum_i probabilities[r, i] . values[i, d0:d0+32] (pairs of positions) for
// the group's rows r < rows (row stride out_stride). Not inlined: its 16 sums, 2 value vectors and a
// broadcast keep to registers (inlined into attend_group, gcc spilled the value vectors to the stack).
__attribute__((noinline)) static void value_tile(const uint32_t* probabilities, int64_t ld, const uint32_t* values,
                                                 int64_t pairs, int64_t Dh, int64_t d0, const float* inv, int64_t rows,
                                                 float* out, int64_t out_stride) {
  __m512 acc[kGroup][2];
  for (int r = 0; r < kGroup; ++r) acc[r][0] = _mm512_setzero_ps(), acc[r][1] = _mm512_setzero_ps();
  for (int64_t i = 0; i < pairs; ++i) {
    const __m512bh first = as_pairs(_mm512_loadu_si512(values + i * Dh + d0));
    const __m512bh second = as_pairs(_mm512_loadu_si512(values + i * Dh + d0 + 16));
    for (int r = 0; r < kGroup; ++r) {
      const __m512bh w = as_pairs(_mm512_set1_epi32(static_cast<int>(probabilities[r * ld + i])));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], first, w);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], second, w);
    }
  }
  for (int r = 0; r < kGroup && r < rows; ++r) {
    const __m512 factor = _mm512_set1_ps(inv[r]);
    _mm512_storeu_ps(out + r * out_stride + d0, _mm512_mul_ps(acc[r][0], factor));
    _mm512_storeu_ps(out + r * out_stride + d0 + 16, _mm512_mul_ps(acc[r][1], factor));
  }
}

// which of the keys [s, s + 16) are among the S real ones (the rest pad the last block)
static inline __mmask16 inside(int64_t s, int64_t S) {
  return s + 16 <= S ? static_cast<__mmask16>(0xFFFF) : (s >= S ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << (S - s)) - 1u));
}

// The group of queries [i0, i0 + 8) of one head: out rows (stride out_stride) of the real queries
// (< N); mask: nullptr, or row pointers' base and stride per query (bool [S], true = attend).
template <int P>
static void attend_group(const Head& head, int64_t i0, int64_t N, int64_t S, const bool* mask, int64_t mask_query_stride,
                         float* out, int64_t out_stride, float* scores, uint32_t* probabilities) {
  constexpr int64_t Dh = 2 * P;
  const int64_t blocks = (S + 31) / 32 * 2, padded = blocks * kKeyBlock, pairs = padded / 2;
  const uint32_t* queries = head.queries + i0 * P;
  for (int64_t kb = 0; kb < blocks; kb += 2) score_tile<P>(queries, head.keys + kb * P * kKeyBlock, scores + kb * kKeyBlock, padded);
  const __m512 minus_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  float inv[kGroup];
  for (int r = 0; r < kGroup; ++r) {
    float* row = scores + r * padded;
    uint32_t* weights = probabilities + r * pairs;
    const bool* valid = mask == nullptr || i0 + r >= N ? nullptr : mask + (i0 + r) * mask_query_stride;
    __m512 top = minus_inf;
    for (int64_t s = 0; s < padded; s += 16) {  // the row's largest score; masked keys -inf
      const __m512 x = _mm512_loadu_ps(row + s);
      if (valid == nullptr) {
        top = _mm512_mask_max_ps(top, inside(s, S), top, x);
        continue;
      }
      const __m128i flags = _mm_maskz_loadu_epi8(inside(s, S), valid + s);
      const __m512 kept = _mm512_mask_blend_ps(_mm_test_epi8_mask(flags, flags), minus_inf, x);
      _mm512_storeu_ps(row + s, kept);
      top = _mm512_max_ps(top, kept);
    }
    const float best = _mm512_reduce_max_ps(top);
    if (best == -std::numeric_limits<float>::infinity()) {  // nothing to attend to: zeros (torch gives NaN)
      for (int64_t i = 0; i < pairs; ++i) weights[i] = 0u;
      inv[r] = 0.f;
      continue;
    }
    const __m512 shift = _mm512_set1_ps(best);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t s = 0; s < padded; s += 16) {  // 16 probabilities -> 16 bfloat16 in order: 8 pairs
      const __m512 x = _mm512_loadu_ps(row + s);
      const __mmask16 live = inside(s, S) & _mm512_cmp_ps_mask(x, minus_inf, _CMP_NEQ_OQ);
      const __m512 p = _mm512_maskz_mov_ps(live, exp16(_mm512_sub_ps(x, shift)));
      sum = _mm512_add_ps(sum, p);
      const __m256bh rounded = _mm512_cvtneps_pbh(p);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(weights + s / 2), reinterpret_cast<const __m256i&>(rounded));
    }
    inv[r] = 1.f / _mm512_reduce_add_ps(sum);
  }
  for (int64_t d0 = 0; d0 < Dh; d0 += 32)
    value_tile(probabilities, pairs, head.values, pairs, Dh, d0, inv, N - i0, out + i0 * out_stride, out_stride);
}
#endif

}  // namespace bf16attn

// Whether bf16_attention runs here (AVX512-BF16 compiled in) for this head size (a multiple of 32
// up to 256: the value tiles take 32 elements at a time).
bool bf16_attention_supported(int64_t head_dim) {
#if defined(__AVX512BF16__)
  return head_dim > 0 && head_dim % 32 == 0 && head_dim <= 256;
#else
  (void)head_dim;
  return false;
#endif
}

// Attention of N queries per (sequence, head) over S keys in bfloat16 products with float32 sums:
// q [B, H, N, Dh], k / v [B, H, S, Dh] float32 (any strides, elements contiguous); mask None or bool
// [B or 1, H or 1, N or 1, S] (true = attend; S contiguous) -> [B, N, H, Dh] float32 (a query with no
// key to attend gives zeros).
torch::Tensor bf16_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, c10::optional<torch::Tensor> mask) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "q, k, v must be [batch, heads, positions, head_dim]");
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), Dh = q.size(3), S = k.size(2);
  TORCH_CHECK(bf16_attention_supported(Dh), "bf16_attention needs AVX512-BF16 and a head size that is a multiple of 32 up to 256");
  TORCH_CHECK(k.sizes() == v.sizes() && k.size(0) == B && k.size(1) == H && k.size(3) == Dh, "q, k, v shapes disagree");
  for (const auto* t : {&q, &k, &v})
    TORCH_CHECK(t->scalar_type() == torch::kFloat && t->device().is_cpu() && t->stride(3) == 1,
                "q, k, v must be float32 CPU tensors with contiguous elements");
  const bool* mask_data = nullptr;
  int64_t mb = 0, mh = 0, mn = 0;
  if (mask.has_value()) {
    const torch::Tensor& m = *mask;
    TORCH_CHECK(m.scalar_type() == torch::kBool && m.dim() == 4 && m.size(3) == S && m.stride(3) == 1 &&
                (m.size(0) == 1 || m.size(0) == B) && (m.size(1) == 1 || m.size(1) == H) && (m.size(2) == 1 || m.size(2) == N),
                "mask must be a bool [B or 1, H or 1, N or 1, S] with contiguous keys");
    mask_data = m.data_ptr<bool>();
    mb = m.size(0) == 1 ? 0 : m.stride(0), mh = m.size(1) == 1 ? 0 : m.stride(1), mn = m.size(2) == 1 ? 0 : m.stride(2);
  }
  auto out = torch::empty({B, N, H, Dh}, q.options());
#if defined(__AVX512BF16__)
  const int64_t P = Dh / 2, groups = (N + bf16attn::kGroup - 1) / bf16attn::kGroup, blocks = (S + 31) / 32 * 2;
  const int64_t padded = blocks * bf16attn::kKeyBlock;
  const int64_t query_words = groups * bf16attn::kGroup * P, key_words = blocks * P * bf16attn::kKeyBlock, value_words = padded / 2 * Dh;
  const int64_t head_words = query_words + key_words + value_words;
  // every word is written by pack_head (padding included), so the buffer is not zeroed first
  const std::unique_ptr<uint32_t[]> packed(new uint32_t[static_cast<size_t>(B * H * head_words)]);
  const auto head_of = [&](int64_t task) {
    uint32_t* base = packed.get() + task * head_words;
    return bf16attn::Head{base, base + query_words, base + query_words + key_words};
  };
  const float scale = 1.f / std::sqrt(static_cast<float>(Dh));
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int threads = std::max(1, at::get_num_threads());
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t task = 0; task < B * H; ++task) {
      const int64_t b = task / H, h = task % H;
      bf16attn::pack_head(qp + b * q.stride(0) + h * q.stride(1), q.stride(2), kp + b * k.stride(0) + h * k.stride(1), k.stride(2),
                         vp + b * v.stride(0) + h * v.stride(1), v.stride(2), N, S, Dh, scale, head_of(task));
    }
    std::vector<float> scores(static_cast<size_t>(bf16attn::kGroup * padded));
    std::vector<uint32_t> probabilities(static_cast<size_t>(bf16attn::kGroup * padded / 2));
#pragma omp for schedule(static)
    for (int64_t work = 0; work < B * H * groups; ++work) {
      const int64_t task = work / groups, b = task / H, h = task % H, i0 = (work % groups) * bf16attn::kGroup;
      const bool* m = mask_data == nullptr ? nullptr : mask_data + b * mb + h * mh;
      float* o = op + b * N * H * Dh + h * Dh;
      const bf16attn::Head head = head_of(task);
      float* sp = scores.data();
      uint32_t* pp = probabilities.data();
      switch (Dh) {  // the score tile's loop over element pairs, unrolled per head size
        case 32: bf16attn::attend_group<16>(head, i0, N, S, m, mn, o, H * Dh, sp, pp); break;
        case 64: bf16attn::attend_group<32>(head, i0, N, S, m, mn, o, H * Dh, sp, pp); break;
        case 96: bf16attn::attend_group<48>(head, i0, N, S, m, mn, o, H * Dh, sp, pp); break;
        case 128: bf16attn::attend_group<64>(head, i0, N, S, m, mn, o, H * Dh, sp, pp); break;
        case 160: bf16attn::attend_group<80>(head, i0, N, S, m, mn, o, H * Dh, sp, pp); break;
        case 192: bf16attn::attend_group<96>(head, i0, N, S, m, mn, o, H * Dh, sp, pp); break;
        case 224: bf16attn::attend_group<112>(head, i0, N, S, m, mn, o, H * Dh, sp, pp); break;
        default: bf16attn::attend_group<128>(head, i0, N, S, m, mn, o, H * Dh, sp, pp); break;
      }
    }
  }
#endif
  return out;
}
"""
