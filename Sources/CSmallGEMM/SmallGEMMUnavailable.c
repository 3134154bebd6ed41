// Off x86-64 there is no AVX2 code: `diffeqnet_small_gemm_available` says so, and the CPU
// backend never calls the others (they are here so that the module links).

#include "CSmallGEMM.h"

#if !defined(__x86_64__)

int diffeqnet_small_gemm_available(void) { return 0; }

size_t diffeqnet_small_gemm_scratch_count(int n, int k) { return 0; }

void diffeqnet_small_sgemm(
    int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
    const float *b, int ldb, float beta, float *c, int ldc, float *scratch) {}

#endif
