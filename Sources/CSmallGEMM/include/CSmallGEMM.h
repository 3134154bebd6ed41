#ifndef DIFFEQNET_CSMALLGEMM_H
#define DIFFEQNET_CSMALLGEMM_H

#include <stddef.h>

/// Float32 matrix products too small for OpenBLAS to pay (its argument checks, packing and
/// threading cost more than a few thousand multiply-adds), with AVX2 and FMA: the layers of
/// small vector fields, such as Linear(2→50) at batch 20, are made of them.
///
/// C, not Swift, for the same reason as CWinograd: Swift cannot compile one function for AVX2
/// while the module stays baseline x86-64. Callers check `diffeqnet_small_gemm_available()`.

/// 1 when this CPU runs the AVX2 + FMA code, else 0.
int diffeqnet_small_gemm_available(void);

/// Floats of scratch that `diffeqnet_small_sgemm` needs for a product with these n and k
/// (the packed copy of op(B) depends on them alone).
size_t diffeqnet_small_gemm_scratch_count(int n, int k);

/// C = alpha·op(A)·op(B) + beta·C in row-major storage, where op(A) is m×k (A stored k×m when
/// `transA`), op(B) is k×n (B stored n×k when `transB`) and C is m×n; lda, ldb and ldc are the
/// stored row lengths. beta = 0 does not read C (it may hold NaN). Requires k ≥ 1.
void diffeqnet_small_sgemm(
    int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
    const float *b, int ldb, float beta, float *c, int ldc, float *scratch);

#endif
