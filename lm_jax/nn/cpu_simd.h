// Small SIMD building blocks shared by lm_jax's CPU kernels (fused_lstm_cpu.cc,
// fused_attention_cpu.cc): 16-lane float vectors, a vectorised exp, and a
// register-blocked GEMM for the small products those kernels run between
// XLA's own calls. Header-only: each kernel is one translation unit, built
// by lm_jax.nn.cpu_kernels.

#ifndef LM_JAX_NN_CPU_SIMD_H_
#define LM_JAX_NN_CPU_SIMD_H_

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace lm_jax_simd {

// GCC/Clang vector extensions: 16 float lanes, which the compiler maps to
// one AVX-512 register, two AVX2 registers or four NEON registers.
constexpr int kLanes = 16;
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Vec Splat(float x) { return Vec{} + x; }

// Loads/stores the first n <= kLanes floats (the rest read as 0). The
// full-width case is spelled out so that it compiles to one vector move,
// not a call to memcpy.
inline Vec Load(const float* p, int n = kLanes) {
  Vec v = Vec{};
  if (n == kLanes) {
    std::memcpy(&v, p, sizeof v);
  } else {
    std::memcpy(&v, p, n * sizeof(float));
  }
  return v;
}
inline void Store(float* p, Vec v, int n = kLanes) {
  if (n == kLanes) {
    std::memcpy(p, &v, sizeof v);
  } else {
    std::memcpy(p, &v, n * sizeof(float));
  }
}

// exp(x) to about 2 ulp: Cephes' polynomial on x - n ln 2, times 2^n.
inline Vec Exp(Vec x) {
  x = x > 88.0f ? Splat(88.0f) : x;
  x = x < -88.0f ? Splat(-88.0f) : x;
  Vec fx = x * 1.44269504088896341f + 0.5f;
  IVec n = __builtin_convertvector(fx, IVec);  // truncates toward zero
  n += (__builtin_convertvector(n, Vec) > fx);  // true is -1: floor
  Vec nf = __builtin_convertvector(n, Vec);
  x = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  Vec y = Splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x * x + x + 1.0f;
  IVec bits = (n + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

inline int64_t RoundUp(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Horizontal sum and maximum of the lanes, as trees of halvings (a chain
// of 15 dependent scalar operations would cost 4x the latency).
inline Vec Halved(Vec v, int step) {
  switch (step) {
    case 8: return __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15,
                                           0, 1, 2, 3, 4, 5, 6, 7);
    case 4: return __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12,
                                           13, 14, 15, 8, 9, 10, 11);
    case 2: return __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10,
                                           11, 8, 9, 14, 15, 12, 13);
    default: return __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9,
                                            8, 11, 10, 13, 12, 15, 14);
  }
}
inline float Sum(Vec v) {
  for (int step = 8; step >= 1; step /= 2) v += Halved(v, step);
  return v[0];
}
inline float Max(Vec v) {
  for (int step = 8; step >= 1; step /= 2) {
    const Vec other = Halved(v, step);
    v = other > v ? other : v;
  }
  return v[0];
}

// Loads p[0], p[stride], ..., p[(n - 1) * stride] (the rest read as 0): one
// AVX-512 gather where there is one.
inline Vec LoadStrided(const float* p, int64_t stride, int n = kLanes) {
#if defined(__AVX512F__)
  if (n == kLanes && stride <= INT32_MAX / kLanes) {
    const __m512i index = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(static_cast<int32_t>(stride)));
    const __m512 v = _mm512_i32gather_ps(index, p, sizeof(float));
    Vec out;
    std::memcpy(&out, &v, sizeof out);
    return out;
  }
#endif
  Vec out = Vec{};
  for (int l = 0; l < n; ++l) out[l] = p[l * stride];
  return out;
}

// c[MR rows, NV * kLanes cols] += a[MR rows, K] @ b[K, NV * kLanes cols]
// with the accumulators in registers (6 x 4 vectors fill AVX-512's 32).
// With kTransA, a is stored transposed: its element (i, k) is a[k * lda + i].
template <int MR, int NV, bool kTransA>
void MicroKernel(const float* a, int64_t lda, const float* b, int64_t ldb,
                 float* c, int64_t ldc, int64_t k_size) {
  Vec acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = Load(c + i * ldc + v * kLanes);
  for (int64_t k = 0; k < k_size; ++k) {
    Vec bk[NV];
    for (int v = 0; v < NV; ++v) bk[v] = Load(b + k * ldb + v * kLanes);
    for (int i = 0; i < MR; ++i) {
      Vec ai = Splat(kTransA ? a[k * lda + i] : a[i * lda + k]);
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * bk[v];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) Store(c + i * ldc + v * kLanes, acc[i][v]);
}

template <int NV, bool kTransA>
void RowBlocks(const float* a, int64_t lda, const float* b, int64_t ldb,
               float* c, int64_t ldc, int64_t m_size, int64_t k_size) {
  const int64_t row_step = kTransA ? 1 : lda;
  int64_t i = 0;
  for (; i + 6 <= m_size; i += 6)
    MicroKernel<6, NV, kTransA>(a + i * row_step, lda, b, ldb, c + i * ldc,
                                ldc, k_size);
  const float* ai = a + i * row_step;
  float* ci = c + i * ldc;
  switch (m_size - i) {
    case 5: MicroKernel<5, NV, kTransA>(ai, lda, b, ldb, ci, ldc, k_size); break;
    case 4: MicroKernel<4, NV, kTransA>(ai, lda, b, ldb, ci, ldc, k_size); break;
    case 3: MicroKernel<3, NV, kTransA>(ai, lda, b, ldb, ci, ldc, k_size); break;
    case 2: MicroKernel<2, NV, kTransA>(ai, lda, b, ldb, ci, ldc, k_size); break;
    case 1: MicroKernel<1, NV, kTransA>(ai, lda, b, ldb, ci, ldc, k_size); break;
    default: break;
  }
}

template <bool kTransA>
void GemmImpl(const float* a, int64_t lda, const float* b, int64_t ldb,
              float* c, int64_t ldc, int64_t m_size, int64_t n_size,
              int64_t k_size) {
  int64_t j = 0;
  for (; j + 4 * kLanes <= n_size; j += 4 * kLanes)
    RowBlocks<4, kTransA>(a, lda, b + j, ldb, c + j, ldc, m_size, k_size);
  switch ((n_size - j) / kLanes) {
    case 3:
      RowBlocks<3, kTransA>(a, lda, b + j, ldb, c + j, ldc, m_size, k_size);
      break;
    case 2:
      RowBlocks<2, kTransA>(a, lda, b + j, ldb, c + j, ldc, m_size, k_size);
      break;
    case 1:
      RowBlocks<1, kTransA>(a, lda, b + j, ldb, c + j, ldc, m_size, k_size);
      break;
    default: break;
  }
}

// c[M, N] += a[M, K] @ b[K, N]; N, ldb and ldc are multiples of kLanes.
inline void Gemm(const float* a, int64_t lda, const float* b, int64_t ldb,
                 float* c, int64_t ldc, int64_t m_size, int64_t n_size,
                 int64_t k_size) {
  GemmImpl<false>(a, lda, b, ldb, c, ldc, m_size, n_size, k_size);
}

// c[M, N] += a^T @ b for a stored as [K, M] (row stride lda); as Gemm.
inline void GemmTransposedA(const float* a, int64_t lda, const float* b,
                            int64_t ldb, float* c, int64_t ldc, int64_t m_size,
                            int64_t n_size, int64_t k_size) {
  GemmImpl<true>(a, lda, b, ldb, c, ldc, m_size, n_size, k_size);
}

}  // namespace lm_jax_simd

#endif  // LM_JAX_NN_CPU_SIMD_H_
