"""C++ of the fused decoding step (:mod:`speechkit.nn.fused_decode`), compiled after the attention
kernel of :mod:`speechkit.nn.decode_kernel_source` (it calls that kernel's ``attend``) and the
matrix products of :mod:`speechkit.nn.stream_gemv_source` (``gemv`` over stream blocks).

One call runs every layer of a pre-LN Transformer stack for one new position of each sequence of
a batch:

* the step is one OpenMP parallel region on torch's threads: each thread takes a contiguous share
  of the blocks of every matrix (so it streams its own part of the weights), the (sequence, head)
  pairs of the attention are shared out the same way, and the threads meet at a barrier between
  the dependent phases (5 per layer) instead of going back to Python and the thread pool;
* bias, residual additions and GELU are applied as each block's outputs are written; layer norms
  are computed by every thread into its own buffer (a few K floats, cheaper than a barrier);
* the new keys/values are stored in the cache (float32, bfloat16 rounded to nearest even, or int8
  or int4 pairs with one scale per position and head, exactly as ``store_quantized``) and attended
  with ``attend``, which meanwhile fetches the thread's next (sequence, head) (``NextTask``).
"""

FUSED_STEP_SOURCE = r"""
namespace fused {

static void layer_norm(const float* x, const float* weight, const float* bias, float eps, int64_t D, float* out) {
#if defined(__AVX512F__)
  if (D % 16 == 0) {  // 16 float lanes of partial sums, two passes (mean, then squared deviations)
    __m512 sum = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) sum = _mm512_add_ps(sum, _mm512_loadu_ps(x + d));
    const float mean = _mm512_reduce_add_ps(sum) / D;
    const __m512 m = _mm512_set1_ps(mean);
    __m512 squares = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) {
      const __m512 c = _mm512_sub_ps(_mm512_loadu_ps(x + d), m);
      squares = _mm512_fmadd_ps(c, c, squares);
    }
    const __m512 inv = _mm512_set1_ps(1.f / std::sqrt(_mm512_reduce_add_ps(squares) / D + eps));
    for (int64_t d = 0; d < D; d += 16) {
      const __m512 c = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + d), m), inv);
      _mm512_storeu_ps(out + d, _mm512_fmadd_ps(c, _mm512_loadu_ps(weight + d), _mm512_loadu_ps(bias + d)));
    }
    return;
  }
#endif
  double sum = 0.0;
  for (int64_t d = 0; d < D; ++d) sum += x[d];
  const float mean = static_cast<float>(sum / D);
  double squares = 0.0;
  for (int64_t d = 0; d < D; ++d) squares += static_cast<double>(x[d] - mean) * (x[d] - mean);
  const float inv = 1.f / std::sqrt(static_cast<float>(squares / D) + eps);
  for (int64_t d = 0; d < D; ++d) out[d] = (x[d] - mean) * inv * weight[d] + bias[d];
}

// one position and head of the cache <- D floats
static inline void store_row(const float* src, float* dst, float*, int64_t D) { std::memcpy(dst, src, D * sizeof(float)); }
static inline void store_row(const float* src, uint16_t* dst, float*, int64_t D) {
  for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<uint16_t>(bf16_bits(src[d]));
}
static inline void store_row(const float* src, int8_t* dst, float* scale_out, int64_t D) {
  *scale_out = quantize_row(src, dst, D);  // as store_quantized
}
static inline void store_row(const float* src, uint8_t* dst, float* scale_out, int64_t D) {
  *scale_out = quantize_row4(src, dst, D);  // int4 pairs, as store_quantized
}

struct Layer {
  const float *norm1_w, *norm1_b, *qkv_w, *qkv_b, *out_w, *out_b, *norm2_w, *norm2_b, *ffn1_w, *ffn1_b, *ffn2_w, *ffn2_b;
};

struct Cache {  // element strides of the keys/values [L, Bc, H, max_length, Dh] and of the int8 scales [L, Bc, H, max_length]
  int64_t layer_stride, batch_stride, head_stride, position_stride, scale_layer_stride, scale_batch_stride, scale_head_stride;
  const int64_t* slots;  // the cache sequence (of Bc) of each of the step's B rows; nullptr: row b is sequence b
  int64_t slot(int64_t row) const { return slots == nullptr ? row : slots[row]; }
};

template <typename T>
struct HeadCache {  // one (sequence, head) of one layer: keys and values [max_length, Dh], their scales
  T* keys;
  T* values;
  float* key_scales;
  float* value_scales;
};

template <typename T, typename Op>
static void run_step(const std::vector<Layer>& layers, const float* final_w, const float* final_b, float eps,
                     bool tanh_gelu, int64_t B, int64_t D, int64_t F, int64_t H, const float* x, float* out, T* keys,
                     T* values, float* key_scales, float* value_scales, const Cache& cache, const bool* valid,
                     int64_t valid_stride, int64_t position) {
  const int64_t Dh = D / H, S = position + 1;
  const float scale = 1.f / std::sqrt(static_cast<float>(Dh));
  const Epilogue activation = tanh_gelu ? Epilogue::kGeluTanh : Epilogue::kGelu;
  std::vector<float> hidden(x, x + B * D), qkv(B * 3 * D), attended(B * D), inner(B * F);
  const int requested = std::max(1, at::get_num_threads());
#pragma omp parallel num_threads(requested)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    std::vector<float> normed(B * D), scores(S);
    const int64_t task_first = B * H * t / nt, task_last = B * H * (t + 1) / nt;  // (sequence, head) pairs
    for (size_t index = 0; index < layers.size(); ++index) {
      const Layer& l = layers[index];
      for (int64_t b = 0; b < B; ++b) layer_norm(hidden.data() + b * D, l.norm1_w, l.norm1_b, eps, D, normed.data() + b * D);
      gemv<Op>(l.qkv_w, l.qkv_b, normed.data(), B, D, 3 * D, qkv.data(), Epilogue::kBias, t, nt);
#pragma omp barrier
      // (sequence, head) task -> its keys, values and scales in this layer
      const auto head_of = [&](int64_t task) {
        const int64_t slot = cache.slot(task / H), h = task % H;
        const int64_t base = index * cache.layer_stride + slot * cache.batch_stride + h * cache.head_stride;
        const int64_t scale_base = index * cache.scale_layer_stride + slot * cache.scale_batch_stride + h * cache.scale_head_stride;
        return HeadCache<T>{keys + base, values + base, key_scales == nullptr ? nullptr : key_scales + scale_base,
                            value_scales == nullptr ? nullptr : value_scales + scale_base};
      };
      const int64_t row_bytes = cache.position_stride * static_cast<int64_t>(sizeof(T));
      for (int64_t task = task_first; task < task_last; ++task) {
        const int64_t b = task / H, h = task % H, slot = cache.slot(b);
        const HeadCache<T> head = head_of(task);
        const float* row = qkv.data() + b * 3 * D + h * Dh;
        const int64_t at = position * cache.position_stride;  // this step's row
        store_row(row + D, head.keys + at, head.key_scales == nullptr ? nullptr : head.key_scales + position, Dh);
        store_row(row + 2 * D, head.values + at, head.value_scales == nullptr ? nullptr : head.value_scales + position, Dh);
        NextTask next;
        if (task + 1 < task_last) {  // its S positions (this step's is written when it runs)
          const HeadCache<T> following = head_of(task + 1);
          next = NextTask::of<T>(following.keys, following.key_scales, following.values, following.value_scales, S, row_bytes);
        }
        attend<T>(row, head.keys, head.values, valid == nullptr ? nullptr : valid + slot * valid_stride, head.key_scales,
                  head.value_scales, S, Dh, cache.position_stride, cache.position_stride, scale,
                  attended.data() + b * D + h * Dh, scores.data(), next);
      }
#pragma omp barrier
      gemv<Op>(l.out_w, l.out_b, attended.data(), B, D, D, hidden.data(), Epilogue::kResidual, t, nt);
#pragma omp barrier
      for (int64_t b = 0; b < B; ++b) layer_norm(hidden.data() + b * D, l.norm2_w, l.norm2_b, eps, D, normed.data() + b * D);
      gemv<Op>(l.ffn1_w, l.ffn1_b, normed.data(), B, D, F, inner.data(), activation, t, nt);
#pragma omp barrier
      gemv<Op>(l.ffn2_w, l.ffn2_b, inner.data(), B, F, D, hidden.data(), Epilogue::kResidual, t, nt);
#pragma omp barrier
    }
    for (int64_t b = B * t / nt; b < B * (t + 1) / nt; ++b)
      layer_norm(hidden.data() + b * D, final_w, final_b, eps, D, out + b * D);
  }
}

// run_step with the cache's element type (float32, bfloat16, or int8 or int4 pairs with scales)
template <typename Op>
static void step_with_cache(const std::vector<Layer>& layers, const float* final_w, const float* final_b, float e,
                            bool tanh_gelu, int64_t B, int64_t D, int64_t F, int64_t H, const float* xp, float* op,
                            const torch::Tensor& keys, const torch::Tensor& values,
                            const c10::optional<torch::Tensor>& key_scales,
                            const c10::optional<torch::Tensor>& value_scales, const Cache& cache, const bool* valid_data,
                            int64_t valid_stride, int64_t position) {
  if (keys.scalar_type() == torch::kFloat) {
    run_step<float, Op>(layers, final_w, final_b, e, tanh_gelu, B, D, F, H, xp, op, keys.data_ptr<float>(),
                        values.data_ptr<float>(), nullptr, nullptr, cache, valid_data, valid_stride, position);
  } else if (keys.scalar_type() == torch::kBFloat16) {
    run_step<uint16_t, Op>(layers, final_w, final_b, e, tanh_gelu, B, D, F, H, xp, op,
                           reinterpret_cast<uint16_t*>(keys.data_ptr<at::BFloat16>()),
                           reinterpret_cast<uint16_t*>(values.data_ptr<at::BFloat16>()), nullptr, nullptr, cache,
                           valid_data, valid_stride, position);
  } else {
    const bool int4 = keys.scalar_type() == torch::kByte;
    TORCH_CHECK(int4 || keys.scalar_type() == torch::kChar, "the cache must be float32, bfloat16, int8 or int4 (uint8 pairs)");
    TORCH_CHECK(!int4 || int4_attention_supported(D / H), "an int4 cache is attended here only with head size 64 or 128 and AVX512-BW");
    TORCH_CHECK(key_scales.has_value() && value_scales.has_value(), "an int8 or int4 cache needs key and value scales");
    for (const auto* s : {&*key_scales, &*value_scales}) {
      TORCH_CHECK(s->scalar_type() == torch::kFloat && s->is_contiguous() && s->sizes() == keys.sizes().slice(0, 4),
                  "scales must be contiguous FloatTensor[layers, batch, heads, max_length]");
    }
    if (int4)
      run_step<uint8_t, Op>(layers, final_w, final_b, e, tanh_gelu, B, D, F, H, xp, op, keys.data_ptr<uint8_t>(),
                            values.data_ptr<uint8_t>(), key_scales->data_ptr<float>(), value_scales->data_ptr<float>(),
                            cache, valid_data, valid_stride, position);
    else
      run_step<int8_t, Op>(layers, final_w, final_b, e, tanh_gelu, B, D, F, H, xp, op, keys.data_ptr<int8_t>(),
                           values.data_ptr<int8_t>(), key_scales->data_ptr<float>(), value_scales->data_ptr<float>(),
                           cache, valid_data, valid_stride, position);
  }
}

}  // namespace fused

// x [B, D] (the new position's inputs of B sequences) -> out [B, D] (the stack's normed outputs); params: per layer
// norm1 w/b [D], qkv stream [ceil(3D/64), D, 64] + bias [3D], out stream + bias [D], norm2 w/b,
// ffn_in stream [ceil(F/64), D, 64] + bias [F], ffn_out stream [ceil(D/64), F, 64] + bias [D] (the
// streams all float32, all bfloat16 [blocks, ceil(inputs/2), 64, 2], or all int8 [blocks, ceil(inputs/4),
// 64, 4] with terms [3, outputs] for biases (see checked_terms); everything else float32);
// then the final norm's w/b. keys/values [L, Bc, H, max_length, Dh] (float32, bfloat16, int8 or int4 pairs [.., Dh / 2] with
// scales [L, Bc, H, max_length]) of Bc >= B sequences; valid [Bc, max_length] bool or None; rows None
// (B == Bc: row b is the cache's sequence b) or LongTensor[B], the cache sequence of each row, in
// increasing order (the others are left as they are: finished sequences of a batch); the position is
// written and positions [0, position] attended.
void fused_decode_step(torch::Tensor x, torch::Tensor out, std::vector<torch::Tensor> params, double eps, bool tanh_gelu,
                       torch::Tensor keys, torch::Tensor values, c10::optional<torch::Tensor> key_scales,
                       c10::optional<torch::Tensor> value_scales, c10::optional<torch::Tensor> valid, int64_t position,
                       c10::optional<torch::Tensor> rows) {
  using fused::checked;
  using fused::checked_stream;
  TORCH_CHECK(params.size() % 12 == 2 && params.size() > 2, "params: 12 tensors per layer and the final norm's 2");
  TORCH_CHECK(x.dim() == 2, "x must be [batch, width]");
  const int64_t L = static_cast<int64_t>(params.size() / 12);
  const int64_t B = x.size(0), D = x.size(1), F = fused::outputs_of(params[9]);
  TORCH_CHECK(keys.dim() == 5 && keys.size(0) == L && keys.sizes() == values.sizes(),
              "keys/values must be [layers, batch, heads, max_length, head_dim]");
  const int64_t Bc = keys.size(1);
  const int64_t* slots = nullptr;
  if (rows.has_value()) {
    TORCH_CHECK(rows->scalar_type() == torch::kLong && rows->dim() == 1 && rows->size(0) == B && rows->is_contiguous() &&
                rows->device().is_cpu(), "rows must be a contiguous LongTensor[batch] on the CPU");
    slots = rows->data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b)
      TORCH_CHECK(slots[b] >= 0 && slots[b] < Bc && (b == 0 || slots[b] > slots[b - 1]),
                  "rows must be increasing sequence indices of the cache, in [0, ", Bc, ")");
  } else {
    TORCH_CHECK(Bc == B, "the cache holds ", Bc, " sequences and x ", B, " rows: pass rows to say which");
  }
  TORCH_CHECK(keys.is_contiguous() && values.is_contiguous() && keys.scalar_type() == values.scalar_type(),
              "keys/values must be contiguous and share a dtype");
  const int64_t H = keys.size(2), Dh = keys.size(4) * (keys.scalar_type() == torch::kByte ? 2 : 1), M = keys.size(3);
  TORCH_CHECK(H * Dh == D, "the cache's heads x head size must be the model width");
  TORCH_CHECK(position >= 0 && position < M, "position ", position, " is outside the cache");
  const float* xp = checked(x, {B, D}, "x");
  float* op = const_cast<float*>(checked(out, {B, D}, "out"));
  const fused::Weights kind = fused::weights_of(params[2]);
  using fused::checked_terms;
  std::vector<fused::Layer> layers(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) {
    const torch::Tensor* p = params.data() + 12 * i;
    layers[i] = fused::Layer{checked(p[0], {D}, "norm1 weight"), checked(p[1], {D}, "norm1 bias"),
                             checked_stream(p[2], 3 * D, D, kind, "qkv weight"), checked_terms(p[3], 3 * D, kind, "qkv bias"),
                             checked_stream(p[4], D, D, kind, "out weight"), checked_terms(p[5], D, kind, "out bias"),
                             checked(p[6], {D}, "norm2 weight"), checked(p[7], {D}, "norm2 bias"),
                             checked_stream(p[8], F, D, kind, "ffn_in weight"), checked_terms(p[9], F, kind, "ffn_in bias"),
                             checked_stream(p[10], D, F, kind, "ffn_out weight"), checked_terms(p[11], D, kind, "ffn_out bias")};
  }
  const float* final_w = checked(params[12 * L], {D}, "final norm weight");
  const float* final_b = checked(params[12 * L + 1], {D}, "final norm bias");
  const bool* valid_data = nullptr;
  int64_t valid_stride = 0;
  if (valid.has_value()) {
    TORCH_CHECK(valid->scalar_type() == torch::kBool && valid->dim() == 2 && valid->size(0) == Bc &&
                valid->size(1) >= position + 1 && valid->stride(1) == 1, "valid must be a BoolTensor[batch, max_length]");
    valid_data = valid->data_ptr<bool>();
    valid_stride = valid->stride(0);
  }
  const fused::Cache cache{keys.stride(0), keys.stride(1), keys.stride(2), keys.stride(3), Bc * H * M, H * M, M, slots};
  const float e = static_cast<float>(eps);
  if (kind == fused::Weights::kBF16) {
    fused::step_with_cache<fused::BF16>(layers, final_w, final_b, e, tanh_gelu, B, D, F, H, xp, op, keys, values,
                                        key_scales, value_scales, cache, valid_data, valid_stride, position);
  } else if (kind == fused::Weights::kI8) {
    fused::step_with_cache<fused::I8>(layers, final_w, final_b, e, tanh_gelu, B, D, F, H, xp, op, keys, values,
                                      key_scales, value_scales, cache, valid_data, valid_stride, position);
  } else {
    fused::step_with_cache<fused::F32>(layers, final_w, final_b, e, tanh_gelu, B, D, F, H, xp, op, keys, values,
                                       key_scales, value_scales, cache, valid_data, valid_stride, position);
  }
}
"""
