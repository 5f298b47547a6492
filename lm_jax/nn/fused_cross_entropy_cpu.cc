// Softmax cross-entropy over a large vocabulary as XLA FFI custom calls for
// the CPU backend, forward and backward.
//
// Why: for a word-level LM (a 10k-word softmax over 700 positions a batch)
// XLA's CPU backend runs log-sum-exp, the accuracy metric's maximum and
// their gradient as about six passes over the [N, V] logits: with the
// output layer's bias, 7 ms of `ptb_lstm_small`'s 65 ms step
// (benchmarks/RESULTS.md). Here the forward reads each row twice while it
// is in the L2 cache (its maximum, then the sum of exponentials) and the
// backward writes softmax - one-hot in one pass, the rows split across
// XLA's threads (cpu_threads.h).
//
// Layouts (row-major; N rows, V classes):
//   forward  in:  logits [N, V] float32, targets [N] int32.
//            out: loss [N] (log-sum-exp minus the target's logit),
//                 lse [N] (log-sum-exp, kept for the backward),
//                 correct [N] (1 where the target's logit is the row's
//                 largest; 1/k where k classes tie for it; else 0).
//   backward in:  logits, targets, lse, d_loss [N].
//            out: d_logits [N, V] = d_loss * (softmax - one-hot).
// A target outside [0, V) contributes no target logit (loss = lse), as a
// one-hot row of zeros would.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu_simd.h"
#include "cpu_threads.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace lm_jax_simd;  // NOLINT: the kernels are written in its terms

// Splits the rows across threads, each given at least this many elements:
// fewer do not pay for handing them to another thread.
constexpr int64_t kElementsPerThread = 1 << 17;

template <typename Body>
void ParallelRows(int64_t rows, int64_t classes, ffi::ThreadPool& pool,
                  const Body& body) {
  const int64_t rows_per_thread =
      std::max<int64_t>(1, kElementsPerThread / std::max<int64_t>(1, classes));
  lm_jax_simd::ParallelRows(rows, NumChunks(rows, rows_per_thread, pool), pool,
                            body);
}

float RowMax(const float* row, int64_t classes) {
  Vec m = Splat(-INFINITY);
  int64_t j = 0;
  for (; j + kLanes <= classes; j += kLanes) {
    const Vec x = Load(row + j);
    m = x > m ? x : m;
  }
  float out = Max(m);
  for (; j < classes; ++j) out = std::max(out, row[j]);
  return out;
}

// How many of the row's logits equal `m`.
int64_t RowCountEqual(const float* row, int64_t classes, float m) {
  IVec counts = IVec{};
  int64_t j = 0;
  // A vector comparison gives -1 in each lane where it holds.
  for (; j + kLanes <= classes; j += kLanes) counts -= Load(row + j) == m;
  int64_t out = 0;
  for (int i = 0; i < kLanes; ++i) out += counts[i];
  for (; j < classes; ++j) out += row[j] == m;
  return out;
}

float RowSumExp(const float* row, int64_t classes, float shift) {
  // Two accumulators: the adds of consecutive vectors do not wait on each
  // other.
  Vec s0 = Vec{}, s1 = Vec{};
  int64_t j = 0;
  for (; j + 2 * kLanes <= classes; j += 2 * kLanes) {
    s0 += Exp(Load(row + j) - shift);
    s1 += Exp(Load(row + j + kLanes) - shift);
  }
  for (; j + kLanes <= classes; j += kLanes) s0 += Exp(Load(row + j) - shift);
  float out = Sum(s0 + s1);
  for (; j < classes; ++j) out += std::exp(row[j] - shift);
  return out;
}

void Forward(ffi::ThreadPool& pool, const float* logits,
             const int32_t* targets, int64_t rows,
             int64_t classes, float* loss, float* lse, float* correct) {
  ParallelRows(rows, classes, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = logits + r * classes;
      const float m = RowMax(row, classes);
      const float log_sum = m + std::log(RowSumExp(row, classes, m));
      const int32_t t = targets[r];
      const bool valid = t >= 0 && t < classes;
      const float target = valid ? row[t] : 0.0f;
      lse[r] = log_sum;
      loss[r] = log_sum - target;
      // A row with a NaN logit (its sum of exponentials is NaN, though the
      // maximum skips NaN) counts as wrong, as in lm_jax.losses.accuracy;
      // a tie for the largest is shared, as there too.
      correct[r] = valid && target >= m && log_sum == log_sum
                       ? 1.0f / RowCountEqual(row, classes, m)
                       : 0.0f;
    }
  });
}

void Backward(ffi::ThreadPool& pool, const float* logits,
              const int32_t* targets, const float* lse,
              const float* d_loss, int64_t rows, int64_t classes,
              float* d_logits) {
  ParallelRows(rows, classes, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = logits + r * classes;
      float* out = d_logits + r * classes;
      const float g = d_loss[r], shift = lse[r];
      int64_t j = 0;
      for (; j + kLanes <= classes; j += kLanes)
        Store(out + j, g * Exp(Load(row + j) - shift));
      for (; j < classes; ++j) out[j] = g * std::exp(row[j] - shift);
      const int32_t t = targets[r];
      if (t >= 0 && t < classes) out[t] -= g;
    }
  });
}

ffi::Error ForwardImpl(ffi::ThreadPool pool,
                       ffi::Buffer<ffi::F32> logits,
                       ffi::Buffer<ffi::S32> targets,
                       ffi::ResultBuffer<ffi::F32> loss,
                       ffi::ResultBuffer<ffi::F32> lse,
                       ffi::ResultBuffer<ffi::F32> correct) {
  auto dims = logits.dimensions();
  if (dims.size() != 2)
    return ffi::Error::InvalidArgument("logits must be [N, V]");
  Forward(pool, logits.typed_data(), targets.typed_data(), dims[0], dims[1],
          loss->typed_data(), lse->typed_data(), correct->typed_data());
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::ThreadPool pool,
                        ffi::Buffer<ffi::F32> logits,
                        ffi::Buffer<ffi::S32> targets,
                        ffi::Buffer<ffi::F32> lse,
                        ffi::Buffer<ffi::F32> d_loss,
                        ffi::ResultBuffer<ffi::F32> d_logits) {
  auto dims = logits.dimensions();
  if (dims.size() != 2)
    return ffi::Error::InvalidArgument("logits must be [N, V]");
  Backward(pool, logits.typed_data(), targets.typed_data(), lse.typed_data(),
           d_loss.typed_data(), dims[0], dims[1], d_logits->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LmJaxCrossEntropyForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(LmJaxCrossEntropyBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
