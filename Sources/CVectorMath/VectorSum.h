// The 8-lane sums the normalisations share (GroupNorm.c, BatchNorm.c): four accumulators per
// sum, so that a loop is bound by its loads rather than by one add chain; tails by masked loads.
// Included only by x86-64 sources compiled with the AVX2 and FMA targets below.

#ifndef DIFFEQNET_VECTOR_SUM_H
#define DIFFEQNET_VECTOR_SUM_H

#include <immintrin.h>

#include "CSIMDSupport.h"

enum { LANES = 8 };

__attribute__((target("avx2,fma"))) static inline float horizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

/// The sums group normalisation takes over a run of n floats.
enum Sum {
  PLAIN,               // Σ x[i]
  SQUARED_DEVIATIONS,  // Σ (x[i] − mu)²
  DOT_DEVIATIONS,      // Σ g[i]·(x[i] − mu)
};

/// acc plus the term of sum `kind` for the 8 lanes x (and g).
__attribute__((target("avx2,fma"))) static inline __m256 addTerm(
    enum Sum kind, __m256 acc, __m256 x, __m256 g, __m256 mu) {
  switch (kind) {
  case PLAIN: return _mm256_add_ps(acc, x);
  case SQUARED_DEVIATIONS: {
    const __m256 d = _mm256_sub_ps(x, mu);
    return _mm256_fmadd_ps(d, d, acc);
  }
  case DOT_DEVIATIONS: return _mm256_fmadd_ps(g, _mm256_sub_ps(x, mu), acc);
  }
  return acc;
}

/// Sum `kind` over x[0..<n] (and g, read only for DOT_DEVIATIONS), with four accumulators; a
/// tail's lanes past n leave their accumulator as it was. `kind` is a constant at every call,
/// so each becomes its own loop.
__attribute__((target("avx2,fma"))) static inline float vectorSum(
    enum Sum kind, const float *x, const float *g, int n, float mu) {
  const __m256 m = _mm256_set1_ps(mu), zero = _mm256_setzero_ps();
  __m256 s0 = zero, s1 = zero, s2 = zero, s3 = zero;
#define G(i) (kind == DOT_DEVIATIONS ? _mm256_loadu_ps(g + (i)) : zero)
  int i = 0;
  for (; i + 4 * LANES <= n; i += 4 * LANES) {
    s0 = addTerm(kind, s0, _mm256_loadu_ps(x + i), G(i), m);
    s1 = addTerm(kind, s1, _mm256_loadu_ps(x + i + LANES), G(i + LANES), m);
    s2 = addTerm(kind, s2, _mm256_loadu_ps(x + i + 2 * LANES), G(i + 2 * LANES), m);
    s3 = addTerm(kind, s3, _mm256_loadu_ps(x + i + 3 * LANES), G(i + 3 * LANES), m);
  }
  for (; i + LANES <= n; i += LANES) s0 = addTerm(kind, s0, _mm256_loadu_ps(x + i), G(i), m);
#undef G
  if (i < n) {
    const __m256i tail = diffeqnet_prefix_mask(n - i);
    const __m256 gt = kind == DOT_DEVIATIONS ? _mm256_maskload_ps(g + i, tail) : zero;
    const __m256 with = addTerm(kind, s1, _mm256_maskload_ps(x + i, tail), gt, m);
    s1 = _mm256_blendv_ps(s1, with, _mm256_castsi256_ps(tail));
  }
  return horizontalSum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

#endif
