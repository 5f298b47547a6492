// Splitting independent rows across threads, for lm_jax's CPU kernels
// (fused_lstm_cpu.cc, fused_cross_entropy_cpu.cc). Header-only, as
// cpu_simd.h.
//
// The chunks run on XLA's own intra-op thread pool (the FFI call's
// ThreadPool context), whose threads are the ones XLA's other work runs
// on: threads of the kernel's own would compete with them for the cores.
// Chunks are claimed from a shared counter, the calling thread claiming
// too, so a chunk never waits for a pool thread that is busy elsewhere.

#ifndef LM_JAX_NN_CPU_THREADS_H_
#define LM_JAX_NN_CPU_THREADS_H_

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace lm_jax_simd {

// Chunks for `rows` independent rows: the pool's threads, no more than the
// CPUs this process may run on, capped by LM_JAX_KERNEL_THREADS when it is
// set, and at most one per `rows_per_thread` rows.
inline int NumChunks(int64_t rows, int64_t rows_per_thread,
                     xla::ffi::ThreadPool& pool) {
  int64_t threads = std::max<int64_t>(1, pool.num_threads());
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    threads = std::min<int64_t>(threads, CPU_COUNT(&set));
  if (const char* cap = std::getenv("LM_JAX_KERNEL_THREADS")) {
    const int n = std::atoi(cap);
    if (n > 0) threads = std::min<int64_t>(threads, n);
  }
  return static_cast<int>(
      std::max<int64_t>(1, std::min(threads, rows / rows_per_thread)));
}

// Runs body(first_row, end_row) on `chunks` contiguous chunks of the rows
// and returns when all have run.
template <typename Body>
void ParallelRows(int64_t rows, int chunks, xla::ffi::ThreadPool& pool,
                  const Body& body) {
  if (chunks <= 1) {
    body(int64_t{0}, rows);
    return;
  }
  struct Progress {
    std::atomic<int> next{0}, done{0};
  };
  // Shared with the pool's tasks, one of which may start only after the
  // call has returned (it then finds no chunk left).
  auto progress = std::make_shared<Progress>();
  auto claim = [progress, rows, chunks, &body] {
    for (int c; (c = progress->next.fetch_add(1)) < chunks;) {
      body(rows * c / chunks, rows * (c + 1) / chunks);
      progress->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int c = 1; c < chunks; ++c) pool.Schedule([claim] { claim(); });
  claim();
  while (progress->done.load(std::memory_order_acquire) < chunks)
    std::this_thread::yield();
}

}  // namespace lm_jax_simd

#endif  // LM_JAX_NN_CPU_THREADS_H_
