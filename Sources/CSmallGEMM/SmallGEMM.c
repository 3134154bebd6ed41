// Small products C = alpha·op(A)·op(B) + beta·C in one of three forms, chosen so that the
// 8 lanes run along a dimension of at least 8 where there is one:
//
//   rows     (n ≥ 8): each row of C accumulates k scaled rows of op(B), packed first with
//            zeros past n (a Linear layer's forward pass, x·Wᵀ, reads B transposed);
//   columns  (n < 8, A stored transposed): each column of C accumulates k scaled rows of the
//            stored A (a layer's weight gradient Gᵀ·X with few inputs);
//   dots     (n < 8 otherwise): each element is a dot product of a row of op(A) with a column of
//            op(B), packed first (a narrow layer's output, or the input gradient G·W).
//
// Tails shorter than 8 use masked loads and stores or the packed copies' zero padding, so nothing
// outside the matrices is read or written. The Swift side keeps the same three forms for float64
// and for CPUs without AVX2 (CPUBackend.smallGEMM).

#include "CSmallGEMM.h"
#include "CSIMDSupport.h"

#if defined(__x86_64__)  // elsewhere: SmallGEMMUnavailable.c

#include <immintrin.h>

enum { LANES = 8, BLOCK = 4 };  // 4 vectors of C in registers at a time

int diffeqnet_small_gemm_available(void) { return diffeqnet_cpu_has_avx2_fma(); }

static int roundUp(int v, int m) { return (v + m - 1) / m * m; }

size_t diffeqnet_small_gemm_scratch_count(int n, int k) {
  // rows: k packed rows of n (rounded up to 8); dots: n packed columns of k (likewise).
  const size_t rows = (size_t)k * roundUp(n, LANES);
  const size_t dots = (size_t)n * roundUp(k, LANES);
  return (rows > dots ? rows : dots) + LANES;
}

/// dst = alpha·v + beta·dst for the first `count` lanes (beta = 0: dst not read).
__attribute__((target("avx2,fma"))) static inline void storeScaled(
    float *dst, __m256 v, int count, __m256 alpha, float beta) {
  const __m256i mask = diffeqnet_prefix_mask(count);
  __m256 out = _mm256_mul_ps(alpha, v);
  if (beta != 0) {
    out = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_maskload_ps(dst, mask), out);
  }
  if (count == LANES) {
    _mm256_storeu_ps(dst, out);
  } else {
    _mm256_maskstore_ps(dst, mask, out);
  }
}

/// Row i of C, columns j0 ..< j0 + 8·vectors, from packed op(B). `vectors` is a constant at
/// every call (see `rowForm`), so the accumulators live in registers.
__attribute__((target("avx2,fma"), always_inline)) static inline void rowBlock(
    int vectors, int n, int k, const float *ai, size_t sal, const float *bp, int ldp, int j0,
    __m256 alpha, float beta, float *ci) {
  __m256 acc[BLOCK];
  for (int v = 0; v < vectors; v++) acc[v] = _mm256_setzero_ps();
  for (int l = 0; l < k; l++) {
    const __m256 s = _mm256_broadcast_ss(ai + l * sal);
    const float *row = bp + (size_t)l * ldp + j0;
    for (int v = 0; v < vectors; v++) {
      acc[v] = _mm256_fmadd_ps(s, _mm256_loadu_ps(row + v * LANES), acc[v]);
    }
  }
  for (int v = 0; v < vectors; v++) {
    const int count = n - j0 - v * LANES < LANES ? n - j0 - v * LANES : LANES;
    storeScaled(ci + j0 + v * LANES, acc[v], count, alpha, beta);
  }
}

/// Row form. `bp` holds op(B) as k rows of stride ldp with zeros past n up to a multiple of 8.
__attribute__((target("avx2,fma"))) static void rowForm(
    int transA, int m, int n, int k, float alpha, const float *a, int lda, const float *bp,
    int ldp, float beta, float *c, int ldc) {
  const __m256 va = _mm256_set1_ps(alpha);
  const size_t sai = transA ? 1 : (size_t)lda, sal = transA ? (size_t)lda : 1;
  for (int j0 = 0; j0 < n; j0 += BLOCK * LANES) {
    const int vectors = (n - j0 + LANES - 1) / LANES;
    for (int i = 0; i < m; i++) {
      const float *ai = a + i * sai;
      float *ci = c + (size_t)i * ldc;
      switch (vectors) {
        case 1: rowBlock(1, n, k, ai, sal, bp, ldp, j0, va, beta, ci); break;
        case 2: rowBlock(2, n, k, ai, sal, bp, ldp, j0, va, beta, ci); break;
        case 3: rowBlock(3, n, k, ai, sal, bp, ldp, j0, va, beta, ci); break;
        default: rowBlock(4, n, k, ai, sal, bp, ldp, j0, va, beta, ci); break;
      }
    }
  }
}

/// Column j of C, rows i0 ..< i0 + rows (at most 8·vectors): Σ_l op(B)[l, j]·(row l of the
/// stored A). `vectors` is a constant at every call, as in `rowBlock`.
__attribute__((target("avx2,fma"), always_inline)) static inline void columnBlock(
    int vectors, int rows, int k, const float *a, int lda, const float *bj, size_t sbl,
    int i0, float alpha, float beta, float *cj, int ldc) {
  __m256 acc[BLOCK];
  for (int v = 0; v < vectors; v++) acc[v] = _mm256_setzero_ps();
  const __m256i tail = diffeqnet_prefix_mask(rows - (vectors - 1) * LANES);
  for (int l = 0; l < k; l++) {
    const __m256 s = _mm256_broadcast_ss(bj + l * sbl);
    const float *al = a + (size_t)l * lda + i0;
    for (int v = 0; v < vectors - 1; v++) {
      acc[v] = _mm256_fmadd_ps(s, _mm256_loadu_ps(al + v * LANES), acc[v]);
    }
    const __m256 x = _mm256_maskload_ps(al + (vectors - 1) * LANES, tail);
    acc[vectors - 1] = _mm256_fmadd_ps(s, x, acc[vectors - 1]);
  }
  float column[BLOCK * LANES];
  for (int v = 0; v < vectors; v++) _mm256_storeu_ps(column + v * LANES, acc[v]);
  for (int r = 0; r < rows; r++) {
    float *dst = cj + (size_t)(i0 + r) * ldc;
    *dst = beta == 0 ? alpha * column[r] : alpha * column[r] + beta * *dst;
  }
}

/// Column form: op(A)[i, l] = a[l·lda + i], so column j of C is Σ_l op(B)[l, j]·(row l of A).
__attribute__((target("avx2,fma"))) static void columnForm(
    int transB, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
    int ldb, float beta, float *c, int ldc) {
  const size_t sbl = transB ? 1 : (size_t)ldb, sbj = transB ? (size_t)ldb : 1;
  for (int i0 = 0; i0 < m; i0 += BLOCK * LANES) {
    const int rows = m - i0 < BLOCK * LANES ? m - i0 : BLOCK * LANES;
    for (int j = 0; j < n; j++) {
      const float *bj = b + j * sbj;
      switch ((rows + LANES - 1) / LANES) {
        case 1: columnBlock(1, rows, k, a, lda, bj, sbl, i0, alpha, beta, c + j, ldc); break;
        case 2: columnBlock(2, rows, k, a, lda, bj, sbl, i0, alpha, beta, c + j, ldc); break;
        case 3: columnBlock(3, rows, k, a, lda, bj, sbl, i0, alpha, beta, c + j, ldc); break;
        default: columnBlock(4, rows, k, a, lda, bj, sbl, i0, alpha, beta, c + j, ldc); break;
      }
    }
  }
}

/// Horizontal sum of 8 lanes.
__attribute__((target("avx2,fma"))) static inline float sum8(__m256 v) {
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

/// Dot form: op(A)'s rows are contiguous; `bc` holds op(B)'s n columns of stride ldp, zero
/// past k up to a multiple of 8. Two columns share each load of A.
__attribute__((target("avx2,fma"))) static void dotForm(
    int m, int n, int k, float alpha, const float *a, int lda, const float *bc, int ldp,
    float beta, float *c, int ldc) {
  const __m256i tail = diffeqnet_prefix_mask(k % LANES == 0 ? LANES : k % LANES);
  const int full = (k - 1) / LANES;  // whole vectors before the last (possibly partial) one
  for (int i = 0; i < m; i++) {
    const float *ai = a + (size_t)i * lda;
    float *ci = c + (size_t)i * ldc;
    for (int j = 0; j < n; j += 2) {
      const int pair = j + 1 < n;
      const float *b0 = bc + (size_t)j * ldp, *b1 = bc + (size_t)(j + pair) * ldp;
      __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
      for (int v = 0; v < full; v++) {
        const __m256 x = _mm256_loadu_ps(ai + v * LANES);
        s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b0 + v * LANES), s0);
        s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b1 + v * LANES), s1);
      }
      const __m256 x = _mm256_maskload_ps(ai + full * LANES, tail);
      s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b0 + full * LANES), s0);
      s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b1 + full * LANES), s1);
      ci[j] = beta == 0 ? alpha * sum8(s0) : alpha * sum8(s0) + beta * ci[j];
      if (pair) ci[j + 1] = beta == 0 ? alpha * sum8(s1) : alpha * sum8(s1) + beta * ci[j + 1];
    }
  }
}

__attribute__((target("avx2,fma"))) void diffeqnet_small_sgemm(
    int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
    const float *b, int ldb, float beta, float *c, int ldc, float *scratch) {
  const size_t sbl = transB ? 1 : (size_t)ldb, sbj = transB ? (size_t)ldb : 1;
  if (n >= LANES) {
    const int ldp = roundUp(n, LANES);
    for (int l = 0; l < k; l++) {
      float *row = scratch + (size_t)l * ldp;
      if (transB) {
        for (int j = 0; j < n; j++) row[j] = b[j * sbj + l];
      } else {
        const float *src = b + (size_t)l * ldb;
        int j = 0;
        for (; j + LANES <= n; j += LANES) _mm256_storeu_ps(row + j, _mm256_loadu_ps(src + j));
        for (; j < n; j++) row[j] = src[j];
      }
      for (int j = n; j < ldp; j++) row[j] = 0;
    }
    rowForm(transA, m, n, k, alpha, a, lda, scratch, ldp, beta, c, ldc);
  } else if (transA) {
    columnForm(transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    const int ldp = roundUp(k, LANES);
    for (int j = 0; j < n; j++) {
      float *column = scratch + (size_t)j * ldp;
      for (int l = 0; l < k; l++) column[l] = b[l * sbl + j * sbj];
      for (int l = k; l < ldp; l++) column[l] = 0;
    }
    dotForm(m, n, k, alpha, a, lda, scratch, ldp, beta, c, ldc);
  }
}

#endif  // defined(__x86_64__)
