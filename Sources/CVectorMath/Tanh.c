// tanh and its derivative, 8 lanes at a time. A tail shorter than 8 is read and written with
// masked loads and stores, so nothing outside the arrays is touched.

#include "CVectorMath.h"
#include "CSIMDSupport.h"

#if defined(__x86_64__)  // elsewhere: VectorMathUnavailable.c

#include <immintrin.h>

enum { LANES = 8 };

int diffeqnet_vector_math_available(void) { return diffeqnet_cpu_has_avx2_fma(); }

/// Eigen's rational minimax approximation (degree 13/6), as `Float.fastTanh`.
__attribute__((target("avx2,fma"))) static inline __m256 tanh8(__m256 v) {
  const __m256 bound = _mm256_set1_ps(7.90531110763549805f);
  const __m256 x = _mm256_min_ps(_mm256_max_ps(v, _mm256_sub_ps(_mm256_setzero_ps(), bound)),
                                 bound);
  const __m256 x2 = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-2.76076847742355e-16f);
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.00018790482477e-13f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-8.60467152213735e-11f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(5.12229709037114e-08f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(1.48572235717979e-05f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(6.37261928875436e-04f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(4.89352455891786e-03f));
  __m256 q = _mm256_set1_ps(1.19825839466702e-06f);
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(1.18534705686654e-04f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(2.26843463243900e-03f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(4.89352518554385e-03f));
  const __m256 t = _mm256_div_ps(_mm256_mul_ps(x, p), q);
  // Below 0.0004 in magnitude tanh(v) is v to float precision.
  const __m256 magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
  const __m256 tiny = _mm256_cmp_ps(magnitude, _mm256_set1_ps(0.0004f), _CMP_LT_OQ);
  return _mm256_blendv_ps(t, v, tiny);
}

/// Cephes' expf, as `Float.fastExp`: eˣ = 2ⁿ·eʳ, n = round(x/ln 2), a degree-6 polynomial for
/// eʳ, inputs clamped to the normal range.
__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 v) {
  const __m256 x = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 magic = _mm256_set1_ps(12582912.0f);  // 1.5·2²³: adding it rounds to an integer
  const __m256 shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(shifted, magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 er =
      _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // n sits in the low mantissa bits of `shifted`.
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_castps_si256(magic)),
                       _mm256_set1_epi32(127)),
      23);
  return _mm256_mul_ps(er, _mm256_castsi256_ps(bits));
}

__attribute__((target("avx2,fma"))) void diffeqnet_tanh(const float *x, float *y, size_t count) {
  size_t i = 0;
  for (; i + LANES <= count; i += LANES) _mm256_storeu_ps(y + i, tanh8(_mm256_loadu_ps(x + i)));
  if (i < count) {
    const __m256i mask = diffeqnet_prefix_mask((int)(count - i));
    _mm256_maskstore_ps(y + i, mask, tanh8(_mm256_maskload_ps(x + i, mask)));
  }
}

/// dy·4e/(1 + e)² with e = exp(−2|x|).
__attribute__((target("avx2,fma"))) static inline __m256 tanhGradient8(__m256 x, __m256 dy) {
  const __m256 magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), magnitude));
  const __m256 onePlus = _mm256_add_ps(_mm256_set1_ps(1.0f), e);
  const __m256 d = _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(4.0f), e),
                                 _mm256_mul_ps(onePlus, onePlus));
  return _mm256_mul_ps(dy, d);
}

__attribute__((target("avx2,fma"))) void diffeqnet_tanh_gradient(
    const float *x, const float *dy, float *dx, size_t count) {
  size_t i = 0;
  for (; i + LANES <= count; i += LANES) {
    _mm256_storeu_ps(dx + i, tanhGradient8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(dy + i)));
  }
  if (i < count) {
    const __m256i mask = diffeqnet_prefix_mask((int)(count - i));
    _mm256_maskstore_ps(
        dx + i, mask,
        tanhGradient8(_mm256_maskload_ps(x + i, mask), _mm256_maskload_ps(dy + i, mask)));
  }
}

#endif  // defined(__x86_64__)
