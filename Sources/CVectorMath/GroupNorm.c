// Group normalisation in float32, 8 lanes at a time with four accumulators per sum (the Swift
// loops it replaces run 4-lane SSE, bound by their add chains). The formulas and the order of
// the passes are `CPUBackend.groupNorm`'s and `groupNormGrad`'s: the mean first, then the squared
// deviations from it, so that the variance does not cancel. Tails use masked loads and stores.

#include "CVectorMath.h"
#include "CSIMDSupport.h"

#if defined(__x86_64__)  // elsewhere: VectorMathUnavailable.c

#include <immintrin.h>
#include <math.h>

#include "VectorSum.h"

__attribute__((target("avx2,fma"))) void diffeqnet_group_norm(
    const float *x, const float *gamma, const float *beta, float *y, float *mean, float *rstd,
    int groups, int channelsPerGroup, int hw, float eps, int first, int count) {
  const int m = channelsPerGroup * hw;
  for (int ng = first; ng < first + count; ng++) {
    const float *base = x + (size_t)ng * m;
    const float mu = vectorSum(PLAIN, base, NULL, m, 0) / (float)m;
    const float variance = vectorSum(SQUARED_DEVIATIONS, base, NULL, m, mu) / (float)m;
    const float rs = 1.0f / sqrtf(variance + eps);
    mean[ng] = mu;
    rstd[ng] = rs;
    const int c0 = (ng % groups) * channelsPerGroup;
    float *out = y + (size_t)ng * m;
    for (int cc = 0; cc < channelsPerGroup; cc++) {
      const float a = rs * gamma[c0 + cc];
      const __m256 scale = _mm256_set1_ps(a), shift = _mm256_set1_ps(beta[c0 + cc] - mu * a);
      const float *in = base + (size_t)cc * hw;
      float *o = out + (size_t)cc * hw;
      int i = 0;
      for (; i + LANES <= hw; i += LANES) {
        _mm256_storeu_ps(o + i, _mm256_fmadd_ps(_mm256_loadu_ps(in + i), scale, shift));
      }
      if (i < hw) {
        const __m256i tail = diffeqnet_prefix_mask(hw - i);
        _mm256_maskstore_ps(
            o + i, tail, _mm256_fmadd_ps(_mm256_maskload_ps(in + i, tail), scale, shift));
      }
    }
  }
}

/// rstd·(γ·dy − meanG − (x − mu)·slope) for 8 lanes, slope = rstd·mean(γ·dy·x̂).
__attribute__((target("avx2,fma"))) static inline __m256 inputGradient(
    __m256 x, __m256 dy, __m256 gamma, __m256 mu, __m256 meanG, __m256 slope, __m256 rstd) {
  const __m256 t = _mm256_fmsub_ps(gamma, dy, meanG);
  return _mm256_mul_ps(rstd, _mm256_fnmadd_ps(_mm256_sub_ps(x, mu), slope, t));
}

__attribute__((target("avx2,fma"))) void diffeqnet_group_norm_grad_input(
    const float *x, const float *gamma, const float *mean, const float *rstd, const float *dy,
    float *dx, int groups, int channelsPerGroup, int hw, int first, int count) {
  const int m = channelsPerGroup * hw;
  for (int ng = first; ng < first + count; ng++) {
    const float mu = mean[ng], rs = rstd[ng];
    const int c0 = (ng % groups) * channelsPerGroup;
    const float *xb = x + (size_t)ng * m, *gb = dy + (size_t)ng * m;
    float sumG = 0, sumGX = 0;
    for (int cc = 0; cc < channelsPerGroup; cc++) {
      const float g = gamma[c0 + cc];
      const float *xc = xb + (size_t)cc * hw, *gc = gb + (size_t)cc * hw;
      sumG += g * vectorSum(PLAIN, gc, NULL, hw, 0);
      sumGX += g * vectorSum(DOT_DEVIATIONS, xc, gc, hw, mu) * rs;
    }
    // dx = rstd·(γ·dy − mean(γ·dy) − x̂·mean(γ·dy·x̂)), x̂ = (x − mu)·rstd.
    const __m256 m0 = _mm256_set1_ps(mu), meanG = _mm256_set1_ps(sumG / (float)m);
    const __m256 slope = _mm256_set1_ps(rs * (sumGX / (float)m)), r = _mm256_set1_ps(rs);
    float *out = dx + (size_t)ng * m;
    for (int cc = 0; cc < channelsPerGroup; cc++) {
      const __m256 g = _mm256_set1_ps(gamma[c0 + cc]);
      const float *xc = xb + (size_t)cc * hw, *gc = gb + (size_t)cc * hw;
      float *o = out + (size_t)cc * hw;
      int i = 0;
      for (; i + LANES <= hw; i += LANES) {
        const __m256 xv = _mm256_loadu_ps(xc + i), gv = _mm256_loadu_ps(gc + i);
        _mm256_storeu_ps(o + i, inputGradient(xv, gv, g, m0, meanG, slope, r));
      }
      if (i < hw) {
        const __m256i tail = diffeqnet_prefix_mask(hw - i);
        const __m256 xv = _mm256_maskload_ps(xc + i, tail), gv = _mm256_maskload_ps(gc + i, tail);
        _mm256_maskstore_ps(o + i, tail, inputGradient(xv, gv, g, m0, meanG, slope, r));
      }
    }
  }
}

__attribute__((target("avx2,fma"))) void diffeqnet_group_norm_grad_params(
    const float *x, const float *mean, const float *rstd, const float *dy, float *dgamma,
    float *dbeta, int n, int channels, int groups, int hw, int first, int count) {
  const int channelsPerGroup = channels / groups;
  for (int c = first; c < first + count; c++) {
    const int g = c / channelsPerGroup;
    float dg = 0, db = 0;
    for (int i = 0; i < n; i++) {
      const size_t off = ((size_t)i * channels + c) * hw;
      const float mu = mean[i * groups + g], rs = rstd[i * groups + g];
      dg += vectorSum(DOT_DEVIATIONS, x + off, dy + off, hw, mu) * rs;
      db += vectorSum(PLAIN, dy + off, NULL, hw, 0);
    }
    dgamma[c] = dg;
    dbeta[c] = db;
  }
}

#endif
