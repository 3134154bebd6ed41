#ifndef DIFFEQNET_CSIMDSUPPORT_H
#define DIFFEQNET_CSIMDSUPPORT_H

/// What the C kernels (CWinograd, CSmallGEMM, CVectorMath, COpenBLASCore) share: the run-time CPU
/// checks behind their `…_available` functions, and the lane masks of their 8-float tails; and
/// the spin-wait hint of the CPU backend's worker threads.

/// 1 when this CPU and its OS run AVX2 and FMA code, else 0 (always 0 off x86-64).
int diffeqnet_cpu_has_avx2_fma(void);

/// 1 when they also run AVX-512 Foundation code, else 0.
int diffeqnet_cpu_has_avx512f(void);

/// A hint that the caller is spinning on a value another core will change: on x86-64 `pause`
/// (some tens of cycles, and it frees the core's resources for its other hardware thread), on
/// arm64 `yield`.
static inline void diffeqnet_spin_pause(void) {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#if defined(__x86_64__)
#include <immintrin.h>

/// The lanes below `count` set: none when count ≤ 0, all 8 when count ≥ 8 (for masked loads and
/// stores of a tail, which touch no memory outside the set lanes).
__attribute__((target("avx2,fma"))) static inline __m256i diffeqnet_prefix_mask(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

#endif
