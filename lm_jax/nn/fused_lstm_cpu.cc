// The LSTM recurrence as one XLA FFI custom call for the CPU backend.
//
// Why: under `lax.scan`, every time step of a small LSTM (batch 20, 200
// units) is a handful of XLA thunks whose hand-offs between the runtime's
// threads cost more than their arithmetic (benchmarks/RESULTS.md). Here a
// whole sequence runs in one call, and the batch rows, whose recurrences are
// independent, are split across threads that never synchronise.
//
// Layouts (row-major, float32; H hidden units, G = 4H gates in order
// i, f, g, o, as lm_jax.nn.recurrent.LSTMCell):
//   forward  in:  projected [B, T, G] (inputs times the input kernel, plus
//                 bias), kernel [H, G] (recurrent), c0, h0 [B, H],
//                 lengths [B] int32 (steps t >= lengths[b] are padding:
//                 the carry is held and the output is 0); attr forget_bias.
//            out: outputs [B, T, H], c_T, h_T [B, H], and for the backward
//                 pass the gate activations [B, T, G] and cells [B, T, H].
//   backward in:  kernel, c0, lengths, activations, cells, d_outputs
//                 [B, T, H], d_c_T, d_h_T [B, H].
//            out: d_projected [B, T, G] (the gates' pre-activation
//                 gradients), d_c0, d_h0 [B, H].
// The recurrent kernel's gradient, sum_t h_{t-1}^T d_gates_t, is one large
// matmul that the caller leaves to XLA.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_simd.h"
#include "cpu_threads.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace lm_jax_simd;  // NOLINT: the kernels are written in its terms

inline Vec Sigmoid(Vec x) { return 1.0f / (1.0f + Exp(-x)); }
inline Vec Tanh(Vec x) { return 2.0f / (1.0f + Exp(-2.0f * x)) - 1.0f; }

// Batch rows per thread: fewer do not pay for handing them to another
// thread.
constexpr int64_t kRowsPerThread = 4;

template <typename Body>
void ParallelRows(int64_t rows, ffi::ThreadPool& pool, const Body& body) {
  lm_jax_simd::ParallelRows(rows, NumChunks(rows, kRowsPerThread, pool), pool,
                            body);
}

// A [rows, cols] matrix copied to a zero-padded [rows, RoundUp(cols)] one,
// optionally transposed first.
std::vector<float> Packed(const float* m, int64_t rows, int64_t cols,
                          bool transpose) {
  const int64_t out_rows = transpose ? cols : rows;
  const int64_t ld = RoundUp(transpose ? rows : cols);
  std::vector<float> packed(out_rows * ld, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      packed[transpose ? c * ld + r : r * ld + c] = m[r * cols + c];
  return packed;
}

// The forward pass on plain arrays (layouts as above).
void Forward(ffi::ThreadPool& pool,
             const float* xp, const float* kernel, const float* c0,
             const float* h0, const int32_t* len, float forget_bias,
             int64_t batch, int64_t steps, int64_t hidden, float* ys,
             float* c_final, float* h_final, float* acts, float* cs) {
  const int64_t gates = 4 * hidden, ldg = RoundUp(gates), ldh = RoundUp(hidden);
  std::vector<float> w = Packed(kernel, hidden, gates, false);
  ParallelRows(batch, pool, [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    std::vector<float> g(rows * ldg), h(rows * ldh, 0.0f), c(rows * hidden);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(&h[r * ldh], h0 + (r0 + r) * hidden,
                  hidden * sizeof(float));
      std::memcpy(&c[r * hidden], c0 + (r0 + r) * hidden,
                  hidden * sizeof(float));
    }
    for (int64_t t = 0; t < steps; ++t) {
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(&g[r * ldg], xp + ((r0 + r) * steps + t) * gates,
                    gates * sizeof(float));
      Gemm(h.data(), ldh, w.data(), ldg, g.data(), ldg, rows, ldg, hidden);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t b = r0 + r, at = b * steps + t;
        float* y = ys + at * hidden;
        if (t >= len[b]) {  // padding: carry held, output 0
          std::memset(y, 0, hidden * sizeof(float));
          std::memset(acts + at * gates, 0, gates * sizeof(float));
          std::memcpy(cs + at * hidden, &c[r * hidden], hidden * sizeof(float));
          continue;
        }
        const float* pre = &g[r * ldg];
        float* act = acts + at * gates;
        for (int64_t j = 0; j < hidden; j += kLanes) {
          const int n = static_cast<int>(std::min<int64_t>(kLanes, hidden - j));
          Vec i = Sigmoid(Load(pre + j, n));
          Vec f = Sigmoid(Load(pre + hidden + j, n) + forget_bias);
          Vec gg = Tanh(Load(pre + 2 * hidden + j, n));
          Vec o = Sigmoid(Load(pre + 3 * hidden + j, n));
          Vec cell = f * Load(&c[r * hidden + j], n) + i * gg;
          Vec out = o * Tanh(cell);
          Store(act + j, i, n);
          Store(act + hidden + j, f, n);
          Store(act + 2 * hidden + j, gg, n);
          Store(act + 3 * hidden + j, o, n);
          Store(&c[r * hidden + j], cell, n);
          Store(cs + at * hidden + j, cell, n);
          Store(&h[r * ldh + j], out, n);
          Store(y + j, out, n);
        }
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(c_final + (r0 + r) * hidden, &c[r * hidden],
                  hidden * sizeof(float));
      std::memcpy(h_final + (r0 + r) * hidden, &h[r * ldh],
                  hidden * sizeof(float));
    }
  });
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> projected,
                       ffi::Buffer<ffi::F32> kernel, ffi::Buffer<ffi::F32> c0,
                       ffi::Buffer<ffi::F32> h0,
                       ffi::Buffer<ffi::S32> lengths, float forget_bias,
                       ffi::ResultBuffer<ffi::F32> outputs,
                       ffi::ResultBuffer<ffi::F32> c_final,
                       ffi::ResultBuffer<ffi::F32> h_final,
                       ffi::ResultBuffer<ffi::F32> activations,
                       ffi::ResultBuffer<ffi::F32> cells) {
  auto dims = projected.dimensions();
  if (dims.size() != 3 || dims[2] % 4 != 0)
    return ffi::Error::InvalidArgument("projected must be [B, T, 4H]");
  Forward(pool, projected.typed_data(), kernel.typed_data(), c0.typed_data(),
          h0.typed_data(), lengths.typed_data(), forget_bias, dims[0],
          dims[1], dims[2] / 4, outputs->typed_data(),
          c_final->typed_data(), h_final->typed_data(),
          activations->typed_data(), cells->typed_data());
  return ffi::Error::Success();
}

// The backward pass on plain arrays (layouts as above).
void Backward(ffi::ThreadPool& pool,
              const float* kernel, const float* c0, const int32_t* len,
              const float* acts, const float* cs, const float* dys,
              const float* d_c_final, const float* d_h_final, int64_t batch,
              int64_t steps, int64_t hidden, float* dxp, float* d_c0,
              float* d_h0) {
  const int64_t gates = 4 * hidden, ldg = RoundUp(gates), ldh = RoundUp(hidden);
  // d h_{t-1} = d gates_t @ kernel^T: the transposed kernel, [G, H] padded.
  std::vector<float> wt = Packed(kernel, hidden, gates, true);
  ParallelRows(batch, pool, [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    std::vector<float> dg(rows * ldg, 0.0f), dh(rows * ldh), dc(rows * hidden);
    std::vector<float> dh_prev(rows * ldh);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(&dh[r * ldh], d_h_final + (r0 + r) * hidden,
                  hidden * sizeof(float));
      std::memcpy(&dc[r * hidden], d_c_final + (r0 + r) * hidden,
                  hidden * sizeof(float));
    }
    for (int64_t t = steps - 1; t >= 0; --t) {
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t b = r0 + r, at = b * steps + t;
        float* d_pre = &dg[r * ldg];
        if (t >= len[b]) {  // padding: no gradient enters, the carry's passes
          std::memset(d_pre, 0, gates * sizeof(float));
          std::memset(dxp + at * gates, 0, gates * sizeof(float));
          continue;
        }
        const float* act = acts + at * gates;
        const float* c_prev = t > 0 ? cs + (at - 1) * hidden
                                    : c0 + b * hidden;
        for (int64_t j = 0; j < hidden; j += kLanes) {
          const int n = static_cast<int>(std::min<int64_t>(kLanes, hidden - j));
          Vec i = Load(act + j, n), f = Load(act + hidden + j, n);
          Vec gg = Load(act + 2 * hidden + j, n);
          Vec o = Load(act + 3 * hidden + j, n);
          Vec tanh_c = Tanh(Load(cs + at * hidden + j, n));
          Vec dh_t = Load(&dh[r * ldh + j], n) + Load(dys + at * hidden + j, n);
          Vec dcell = Load(&dc[r * hidden + j], n) +
                      dh_t * o * (1.0f - tanh_c * tanh_c);
          Store(d_pre + j, dcell * gg * i * (1.0f - i), n);
          Store(d_pre + hidden + j,
                dcell * Load(c_prev + j, n) * f * (1.0f - f), n);
          Store(d_pre + 2 * hidden + j, dcell * i * (1.0f - gg * gg), n);
          Store(d_pre + 3 * hidden + j, dh_t * tanh_c * o * (1.0f - o), n);
          Store(&dc[r * hidden + j], dcell * f, n);
        }
        std::memcpy(dxp + at * gates, d_pre, gates * sizeof(float));
      }
      std::fill(dh_prev.begin(), dh_prev.end(), 0.0f);
      Gemm(dg.data(), ldg, wt.data(), ldh, dh_prev.data(), ldh, rows, ldh,
           gates);
      for (int64_t r = 0; r < rows; ++r)
        if (t < len[r0 + r])
          std::memcpy(&dh[r * ldh], &dh_prev[r * ldh], ldh * sizeof(float));
    }
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(d_h0 + (r0 + r) * hidden, &dh[r * ldh],
                  hidden * sizeof(float));
      std::memcpy(d_c0 + (r0 + r) * hidden, &dc[r * hidden],
                  hidden * sizeof(float));
    }
  });
}

ffi::Error BackwardImpl(ffi::ThreadPool pool,
                        ffi::Buffer<ffi::F32> kernel, ffi::Buffer<ffi::F32> c0,
                        ffi::Buffer<ffi::S32> lengths,
                        ffi::Buffer<ffi::F32> activations,
                        ffi::Buffer<ffi::F32> cells,
                        ffi::Buffer<ffi::F32> d_outputs,
                        ffi::Buffer<ffi::F32> d_c_final,
                        ffi::Buffer<ffi::F32> d_h_final,
                        ffi::ResultBuffer<ffi::F32> d_projected,
                        ffi::ResultBuffer<ffi::F32> d_c0,
                        ffi::ResultBuffer<ffi::F32> d_h0) {
  auto dims = activations.dimensions();
  if (dims.size() != 3 || dims[2] % 4 != 0)
    return ffi::Error::InvalidArgument("activations must be [B, T, 4H]");
  Backward(pool, kernel.typed_data(), c0.typed_data(), lengths.typed_data(),
           activations.typed_data(), cells.typed_data(),
           d_outputs.typed_data(), d_c_final.typed_data(),
           d_h_final.typed_data(), dims[0], dims[1], dims[2] / 4,
           d_projected->typed_data(), d_c0->typed_data(), d_h0->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LmJaxLstmForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<float>("forget_bias")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(LmJaxLstmBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
