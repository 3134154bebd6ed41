// Batch normalisation in float32, 8 lanes at a time: `CPUBackend.batchNorm`'s and
// `batchNormGrad`'s passes per channel. A channel's values are n runs of hw floats (NCHW); each
// run is summed in float by `vectorSum`, the runs' totals in double (n·hw reaches 10⁵ and more).
// The backward pass applies the fused ReLU's mask in registers, so that dy·[y > 0] is never
// stored: two passes over (x, dy, y) instead of the four a stored mask costs.

#include "CVectorMath.h"
#include "CSIMDSupport.h"

#if defined(__x86_64__)  // elsewhere: VectorMathUnavailable.c

#include <immintrin.h>
#include <math.h>

#include "VectorSum.h"

__attribute__((target("avx2,fma"))) void diffeqnet_batch_norm(
    const float *x, const float *gamma, const float *beta, float *y, float *mean,
    float *variance, int n, int channels, int hw, float eps, int relu, int first, int count) {
  const double m = (double)n * hw;
  const __m256 zero = _mm256_setzero_ps();
  for (int c = first; c < first + count; c++) {
    double total = 0;
    for (int i = 0; i < n; i++) {
      total += vectorSum(PLAIN, x + ((size_t)i * channels + c) * hw, NULL, hw, 0);
    }
    const float mu = (float)(total / m);
    double squares = 0;
    for (int i = 0; i < n; i++) {
      squares += vectorSum(SQUARED_DEVIATIONS, x + ((size_t)i * channels + c) * hw, NULL, hw, mu);
    }
    const double v = squares / m;
    mean[c] = mu;
    variance[c] = (float)v;
    const float a = (float)(1 / sqrt(v + eps)) * gamma[c];
    const __m256 scale = _mm256_set1_ps(a), shift = _mm256_set1_ps(beta[c] - mu * a);
    for (int i = 0; i < n; i++) {
      const size_t o = ((size_t)i * channels + c) * hw;
      const float *in = x + o;
      float *out = y + o;
      int j = 0;
      for (; j + LANES <= hw; j += LANES) {
        __m256 r = _mm256_fmadd_ps(_mm256_loadu_ps(in + j), scale, shift);
        if (relu) r = _mm256_max_ps(r, zero);
        _mm256_storeu_ps(out + j, r);
      }
      if (j < hw) {
        const __m256i tail = diffeqnet_prefix_mask(hw - j);
        __m256 r = _mm256_fmadd_ps(_mm256_maskload_ps(in + j, tail), scale, shift);
        if (relu) r = _mm256_max_ps(r, zero);
        _mm256_maskstore_ps(out + j, tail, r);
      }
    }
  }
}

/// dy, or dy·[y > 0] when y (the fused ReLU's output) is given, for 8 lanes.
__attribute__((target("avx2,fma"))) static inline __m256 maskedGradient(
    const float *dy, const float *y, int j, __m256i tail, int partial) {
  const __m256 g = partial ? _mm256_maskload_ps(dy + j, tail) : _mm256_loadu_ps(dy + j);
  if (!y) return g;
  const __m256 out = partial ? _mm256_maskload_ps(y + j, tail) : _mm256_loadu_ps(y + j);
  return _mm256_and_ps(g, _mm256_cmp_ps(out, _mm256_setzero_ps(), _CMP_GT_OQ));
}

__attribute__((target("avx2,fma"))) void diffeqnet_batch_norm_grad(
    const float *x, const float *gamma, const float *mean, const float *variance, const float *y,
    const float *dy, float *dx, float *dgamma, float *dbeta, int n, int channels, int hw,
    float eps, int batchStatistics, int first, int count) {
  const float m = (float)n * (float)hw;
  const __m256i none = _mm256_setzero_si256();
  for (int c = first; c < first + count; c++) {
    const float mu = mean[c], rs = 1.0f / sqrtf(variance[c] + eps);
    const __m256 mv = _mm256_set1_ps(mu), zero = _mm256_setzero_ps();
    // Σ g and Σ g·(x − μ) per run, g the (masked) dy, both in one pass.
    double sumDy = 0, sumDyX = 0;
    for (int i = 0; i < n; i++) {
      const size_t o = ((size_t)i * channels + c) * hw;
      const float *xr = x + o, *dr = dy + o, *yr = y ? y + o : NULL;
      __m256 s0 = zero, s1 = zero, d0 = zero, d1 = zero;
      int j = 0;
      for (; j + 2 * LANES <= hw; j += 2 * LANES) {
        const __m256 g0 = maskedGradient(dr, yr, j, none, 0);
        const __m256 g1 = maskedGradient(dr, yr, j + LANES, none, 0);
        s0 = _mm256_add_ps(s0, g0);
        s1 = _mm256_add_ps(s1, g1);
        d0 = _mm256_fmadd_ps(g0, _mm256_sub_ps(_mm256_loadu_ps(xr + j), mv), d0);
        d1 = _mm256_fmadd_ps(g1, _mm256_sub_ps(_mm256_loadu_ps(xr + j + LANES), mv), d1);
      }
      for (; j < hw; j += LANES) {
        const int partial = hw - j < LANES;
        const __m256i tail = partial ? diffeqnet_prefix_mask(hw - j) : none;
        const __m256 g = maskedGradient(dr, yr, j, tail, partial);  // zero past the tail
        const __m256 xv = partial ? _mm256_maskload_ps(xr + j, tail) : _mm256_loadu_ps(xr + j);
        s0 = _mm256_add_ps(s0, g);
        d0 = _mm256_fmadd_ps(g, _mm256_sub_ps(xv, mv), d0);
      }
      sumDy += horizontalSum(_mm256_add_ps(s0, s1));
      sumDyX += horizontalSum(_mm256_add_ps(d0, d1));
    }
    const float db = (float)sumDy, dg = (float)sumDyX * rs;
    dgamma[c] = dg;
    dbeta[c] = db;
    // dx = a·(g − db/M − (x − μ)·dg·rstd/M), a = γ·rstd.
    const __m256 a = _mm256_set1_ps(gamma[c] * rs);
    const __m256 meanDy = _mm256_set1_ps(batchStatistics ? db / m : 0);
    const __m256 meanDyX = _mm256_set1_ps(batchStatistics ? dg / m * rs : 0);
    for (int i = 0; i < n; i++) {
      const size_t o = ((size_t)i * channels + c) * hw;
      const float *xr = x + o, *dr = dy + o, *yr = y ? y + o : NULL;
      float *out = dx + o;
      for (int j = 0; j < hw; j += LANES) {
        const int partial = hw - j < LANES;
        const __m256i tail = partial ? diffeqnet_prefix_mask(hw - j) : none;
        const __m256 g = maskedGradient(dr, yr, j, tail, partial);
        const __m256 xv = partial ? _mm256_maskload_ps(xr + j, tail) : _mm256_loadu_ps(xr + j);
        const __m256 t = _mm256_fnmadd_ps(_mm256_sub_ps(xv, mv), meanDyX, _mm256_sub_ps(g, meanDy));
        const __m256 r = _mm256_mul_ps(a, t);
        if (partial) {
          _mm256_maskstore_ps(out + j, tail, r);
        } else {
          _mm256_storeu_ps(out + j, r);
        }
      }
    }
  }
}

#endif
