// Causal self-attention as one XLA FFI custom call for the CPU backend,
// forward and backward.
//
// Why: at the sizes GPT trains at on a CPU (64 positions, heads of 32),
// XLA's attention is a dozen small kernels: two batched products, the heads
// transposed to the front and back, the mask, the softmax's passes, and as
// many again for the gradient, each a hand-off between the runtime's
// threads. Here one call does one (batch row, head) pair after another in
// buffers that stay in the L1/L2 cache, and skips the products' masked half.
//
// Layouts (row-major, float32; B rows, T positions, H heads, D per head):
//   forward  in:  qkv [B, T, 3, H, D] (the fused q/k/v projection's output,
//                 as lm_jax.nn.attention.MultiHeadAttention computes it);
//                 attr scale (applied to q, usually 1/sqrt(D)).
//            out: out [B, T, H, D], the weighted values, ready for the
//                 output projection; stats [B, H, T, 2], each query's
//                 largest scaled logit and 1 / the sum of the exponentials,
//                 kept for the backward.
//   backward in:  qkv, out, stats, d_out [B, T, H, D]; attr scale.
//            out: d_qkv [B, T, 3, H, D].
// Query i attends to keys 0..i. The backward recomputes the weights from
// the stats instead of storing the [B, H, T, T] matrix (as FlashAttention
// does).
//
// One thread per call: XLA's CPU backend runs one call per device, and
// lm_jax runs one device per core.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu_simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace lm_jax_simd;  // NOLINT: the kernels are written in its terms

// Rows of the score matrix computed together: one block of key columns.
constexpr int64_t kBlock = kLanes;

static_assert(kLanes == 16, "kIota lists one index per lane");
const IVec kIota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

struct Shape {
  int64_t batch, length, heads, dim;
  int64_t ld_t() const { return RoundUp(length); }
  int64_t ld_d() const { return RoundUp(dim); }
  // Offset of position t's vector `which` (0 q, 1 k, 2 v) of head h in qkv.
  int64_t QkvOffset(int64_t b, int64_t t, int which, int64_t h) const {
    return ((b * length + t) * 3 + which) * heads * dim + h * dim;
  }
  // Offset of position t of head h in an [B, T, H, D] array.
  int64_t HeadOffset(int64_t b, int64_t t, int64_t h) const {
    return ((b * length + t) * heads + h) * dim;
  }
};

// The [T, D] vectors of one head, scaled, into a zero-padded [T, ld_d]
// buffer.
void Gather(const float* src, int64_t stride, const Shape& s, float scale,
            float* dst) {
  const int64_t ld = s.ld_d();
  for (int64_t t = 0; t < s.length; ++t) {
    const float* row = src + t * stride;
    for (int64_t d = 0; d < s.dim; ++d) dst[t * ld + d] = row[d] * scale;
  }
}

// The inverse of Gather, row t scaled by row_scale[2 t + 1] when given.
void Scatter(const float* src, const Shape& s, int64_t stride, float* dst,
             const float* row_scale = nullptr) {
  const int64_t ld = s.ld_d();
  for (int64_t t = 0; t < s.length; ++t) {
    const float scale = row_scale ? row_scale[2 * t + 1] : 1.0f;
    for (int64_t d = 0; d < s.dim; ++d)
      dst[t * stride + d] = src[t * ld + d] * scale;
  }
}

// The [T, D] vectors of one head (rows `stride` apart) transposed into a
// zero-padded [D, ld_t] buffer, 16 positions per (gathering) load.
void GatherTransposed(const float* src, int64_t stride, const Shape& s,
                      float* dst) {
  const int64_t ld = s.ld_t();
  for (int64_t t = 0; t < s.length; t += kLanes) {
    const int n = static_cast<int>(std::min<int64_t>(kLanes, s.length - t));
    for (int64_t d = 0; d < s.dim; ++d)
      Store(dst + d * ld + t, LoadStrided(src + t * stride + d, stride, n));
  }
}

// scores[i, :] = q_i . k_j for j < RoundUp of the end of i's row block: the
// causal half (block-wise) of q k^T. q is [T, ld_d], k_t is [D, ld_t].
void CausalScores(const float* q, const float* k_t, const Shape& s,
                  float* scores) {
  const int64_t ld_t = s.ld_t(), ld_d = s.ld_d();
  std::fill(scores, scores + s.length * ld_t, 0.0f);
  for (int64_t i0 = 0; i0 < s.length; i0 += kBlock) {
    const int64_t i1 = std::min(s.length, i0 + kBlock);
    Gemm(q + i0 * ld_d, ld_d, k_t, ld_t, scores + i0 * ld_t, ld_t, i1 - i0,
         RoundUp(i1), s.dim);
  }
}

// Row i of `scores` becomes its softmax weights at j <= i, 0 after.
// Without `stats` they are left unnormalised, exp(scores - max), and the
// row's max and 1 / sum go to stats_out[2i], [2i + 1] (the caller scales
// the weighted sum instead of the weights); with `stats`, the saved pair
// gives the normalised weights.
void CausalSoftmax(float* scores, const Shape& s, const float* stats,
                   float* stats_out) {
  const int64_t ld_t = s.ld_t();
  for (int64_t i = 0; i < s.length; ++i) {
    float* row = scores + i * ld_t;
    const int64_t live = RoundUp(i + 1);
    const auto visible = [&](int64_t j) {  // lanes j, j + 1, ... <= i
      return (kIota + static_cast<int32_t>(j)) <= static_cast<int32_t>(i);
    };
    float shift, scale = 1.0f;
    if (stats) {
      shift = stats[2 * i];
      scale = stats[2 * i + 1];
    } else {
      Vec best = Splat(-INFINITY);
      for (int64_t j = 0; j < live; j += kLanes) {
        const Vec x = Load(row + j);
        best = visible(j) && x > best ? x : best;
      }
      shift = Max(best);
    }
    Vec total = Vec{};
    for (int64_t j = 0; j < live; j += kLanes) {
      const Vec p = visible(j) ? Exp(Load(row + j) - shift) * scale : Vec{};
      total += p;
      Store(row + j, p);
    }
    std::fill(row + live, row + ld_t, 0.0f);
    if (!stats) {
      stats_out[2 * i] = shift;
      stats_out[2 * i + 1] = 1.0f / Sum(total);
    }
  }
}

// out[i] += sum_j w[i, j] v[j] over each row block's causal columns.
void CausalWeighted(const float* w, const float* v, const Shape& s,
                    float* out) {
  const int64_t ld_t = s.ld_t(), ld_d = s.ld_d();
  for (int64_t i0 = 0; i0 < s.length; i0 += kBlock) {
    const int64_t i1 = std::min(s.length, i0 + kBlock);
    Gemm(w + i0 * ld_t, ld_t, v, ld_d, out + i0 * ld_d, ld_d, i1 - i0, ld_d,
         i1);
  }
}

// out[j] += sum_i w[i, j] x[i] over i >= j (w's causal half, read
// transposed in place).
void CausalWeightedTransposed(const float* w, const float* x, const Shape& s,
                              float* out) {
  const int64_t ld_t = s.ld_t(), ld_d = s.ld_d();
  for (int64_t j0 = 0; j0 < s.length; j0 += kBlock) {
    const int64_t j1 = std::min(s.length, j0 + kBlock);
    GemmTransposedA(w + j0 * ld_t + j0, ld_t, x + j0 * ld_d, ld_d,
                    out + j0 * ld_d, ld_d, j1 - j0, ld_d, s.length - j0);
  }
}

struct Buffers {
  std::vector<float> q, k, k_t, v, v_t, scores, out;
  explicit Buffers(const Shape& s)
      : q(s.length * s.ld_d()), k(q.size()), k_t(s.dim * s.ld_t()),
        v(q.size()), v_t(k_t.size()), scores(s.length * s.ld_t()),
        out(q.size()) {}
};

const float* QkvHead(const float* qkv, const Shape& s, int64_t b, int which,
                     int64_t h) {
  return qkv + s.QkvOffset(b, 0, which, h);
}

void Forward(const float* qkv, float scale, const Shape& s, float* out,
             float* stats) {
  Buffers buf(s);
  const int64_t stride = 3 * s.heads * s.dim;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      Gather(QkvHead(qkv, s, b, 0, h), stride, s, scale, buf.q.data());
      GatherTransposed(QkvHead(qkv, s, b, 1, h), stride, s, buf.k_t.data());
      Gather(QkvHead(qkv, s, b, 2, h), stride, s, 1.0f, buf.v.data());
      CausalScores(buf.q.data(), buf.k_t.data(), s, buf.scores.data());
      float* head_stats = stats + (b * s.heads + h) * s.length * 2;
      CausalSoftmax(buf.scores.data(), s, nullptr, head_stats);
      std::fill(buf.out.begin(), buf.out.end(), 0.0f);
      CausalWeighted(buf.scores.data(), buf.v.data(), s, buf.out.data());
      Scatter(buf.out.data(), s, s.heads * s.dim,
              out + s.HeadOffset(b, 0, h), head_stats);
    }
  }
}

void Backward(const float* qkv, const float* out, const float* stats,
              const float* d_out, float scale, const Shape& s, float* d_qkv) {
  Buffers buf(s);
  const int64_t stride = 3 * s.heads * s.dim, ld_t = s.ld_t(),
                ld_d = s.ld_d();
  std::vector<float> d_o(buf.q.size()), o(buf.q.size()),
      d_scores(buf.scores.size()), row_dot(s.length);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      Gather(QkvHead(qkv, s, b, 0, h), stride, s, scale, buf.q.data());
      Gather(QkvHead(qkv, s, b, 1, h), stride, s, 1.0f, buf.k.data());
      GatherTransposed(QkvHead(qkv, s, b, 1, h), stride, s, buf.k_t.data());
      GatherTransposed(QkvHead(qkv, s, b, 2, h), stride, s, buf.v_t.data());
      Gather(d_out + s.HeadOffset(b, 0, h), s.heads * s.dim, s, 1.0f,
             d_o.data());
      Gather(out + s.HeadOffset(b, 0, h), s.heads * s.dim, s, 1.0f, o.data());
      // The weights again, from the saved log-sum-exp.
      CausalScores(buf.q.data(), buf.k_t.data(), s, buf.scores.data());
      CausalSoftmax(buf.scores.data(), s,
                    stats + (b * s.heads + h) * s.length * 2, nullptr);
      float* w = buf.scores.data();
      // d_w = d_o v^T; d_scores = w * (d_w - rowsum(w * d_w)), where
      // rowsum(w * d_w) = d_o . o.
      CausalScores(d_o.data(), buf.v_t.data(), s, d_scores.data());
      for (int64_t i = 0; i < s.length; ++i) {
        Vec dot = Vec{};
        for (int64_t d = 0; d < ld_d; d += kLanes)
          dot += Load(&d_o[i * ld_d + d]) * Load(&o[i * ld_d + d]);
        row_dot[i] = Sum(dot);
      }
      for (int64_t i = 0; i < s.length; ++i) {
        float* d_row = d_scores.data() + i * ld_t;
        const float* w_row = w + i * ld_t;
        for (int64_t j = 0; j < ld_t; ++j)
          d_row[j] = w_row[j] * (d_row[j] - row_dot[i]);
      }
      // d_q = scale * d_scores k (the scores were of the scaled q).
      std::fill(buf.out.begin(), buf.out.end(), 0.0f);
      CausalWeighted(d_scores.data(), buf.k.data(), s, buf.out.data());
      for (float& x : buf.out) x *= scale;
      Scatter(buf.out.data(), s, stride, d_qkv + s.QkvOffset(b, 0, 0, h));
      // d_k = d_scores^T (scale q).
      std::fill(buf.out.begin(), buf.out.end(), 0.0f);
      CausalWeightedTransposed(d_scores.data(), buf.q.data(), s,
                               buf.out.data());
      Scatter(buf.out.data(), s, stride, d_qkv + s.QkvOffset(b, 0, 1, h));
      // d_v = w^T d_o.
      std::fill(buf.out.begin(), buf.out.end(), 0.0f);
      CausalWeightedTransposed(w, d_o.data(), s, buf.out.data());
      Scatter(buf.out.data(), s, stride, d_qkv + s.QkvOffset(b, 0, 2, h));
    }
  }
}

ffi::Error ShapeOf(ffi::Buffer<ffi::F32>& qkv, Shape* s) {
  auto dims = qkv.dimensions();
  if (dims.size() != 5 || dims[2] != 3)
    return ffi::Error::InvalidArgument("qkv must be [B, T, 3, H, D]");
  *s = Shape{dims[0], dims[1], dims[3], dims[4]};
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> qkv, float scale,
                       ffi::ResultBuffer<ffi::F32> out,
                       ffi::ResultBuffer<ffi::F32> stats) {
  Shape s;
  if (auto error = ShapeOf(qkv, &s); error.failure()) return error;
  Forward(qkv.typed_data(), scale, s, out->typed_data(), stats->typed_data());
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::Buffer<ffi::F32> qkv, ffi::Buffer<ffi::F32> out,
                        ffi::Buffer<ffi::F32> stats,
                        ffi::Buffer<ffi::F32> d_out, float scale,
                        ffi::ResultBuffer<ffi::F32> d_qkv) {
  Shape s;
  if (auto error = ShapeOf(qkv, &s); error.failure()) return error;
  Backward(qkv.typed_data(), out.typed_data(), stats.typed_data(),
           d_out.typed_data(), scale, s, d_qkv->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LmJaxCausalAttentionForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(LmJaxCausalAttentionBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale")
                                  .Ret<ffi::Buffer<ffi::F32>>());
