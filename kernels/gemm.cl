// Batched row-major GEMM: C = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B) k×n.
//
// Specialised by the host with -D T=float or -D T=double -D USE_FP64, and the tiling:
//   TS   the square output tile per work-group (TS×TS elements of C),
//   WPT  outputs per work-item in each dimension (register blocking: WPT×WPT accumulators),
//   TSK  the depth of the k-slab staged in local memory per iteration.
// The work-group is (TS/WPT)×(TS/WPT) work-items; the host picks the largest configuration whose
// work-group size and local memory the device and the compiled kernel allow.
//
// Launch: global (ceil(n/TS)·TS/WPT, ceil(m/TS)·TS/WPT, batch), local (TS/WPT, TS/WPT, 1).
// Dimension 0 runs along the columns of C so that stores to C are coalesced.

#ifndef TS
#define TS 64
#endif
#ifndef WPT
#define WPT 4
#endif
#ifndef TSK
#define TSK 16
#endif

#define RTS (TS / WPT)
#define NT (RTS * RTS)
// Rows of the local tiles are padded by one element: the stores below write a tile column per
// group of consecutive work-items, and a stride of TS + 1 spreads them over distinct banks.
#define TSP (TS + 1)

__kernel __attribute__((reqd_work_group_size(RTS, RTS, 1)))
void gemm(
  const int m, const int n, const int k, const int trans_a, const int trans_b,
  const T alpha, const T beta,
  __global const T* a, const int offset_a, const int lda, const int stride_a,
  __global const T* b, const int offset_b, const int ldb, const int stride_b,
  __global T* c, const int offset_c, const int ldc, const int stride_c) {
  // as[kk][r] = op(A)[row0 + r, t + kk];  bs[kk][q] = op(B)[t + kk, col0 + q]
  __local T as[TSK][TSP];
  __local T bs[TSK][TSP];

  const int tx = get_local_id(0);
  const int ty = get_local_id(1);
  const int tid = ty * RTS + tx;
  const int col0 = get_group_id(0) * TS;
  const int row0 = get_group_id(1) * TS;
  const long batch = get_global_id(2);
  a += offset_a + batch * stride_a;
  b += offset_b + batch * stride_b;
  c += offset_c + batch * stride_c;

  T acc[WPT][WPT];
  for (int wi = 0; wi < WPT; wi++)
    for (int wj = 0; wj < WPT; wj++) acc[wi][wj] = (T)0;

  for (int t = 0; t < k; t += TSK) {
    // Stage the slabs. The index mapping follows the memory layout of each operand so that
    // consecutive work-items load consecutive addresses (coalesced) whatever the transposes;
    // out-of-range elements load as zero, which makes the edge tiles need no special casing.
    for (int l = tid; l < TSK * TS; l += NT) {
      int r, kk;
      if (trans_a) {  // A is k×m in memory: rows of op(A) are contiguous
        r = l % TS;
        kk = l / TS;
      } else {  // A is m×k: the k index is contiguous
        kk = l % TSK;
        r = l / TSK;
      }
      const int gr = row0 + r, gk = t + kk;
      T v = (T)0;
      if (gr < m && gk < k) v = trans_a ? a[gk * lda + gr] : a[gr * lda + gk];
      as[kk][r] = v;
    }
    for (int l = tid; l < TSK * TS; l += NT) {
      int q, kk;
      if (trans_b) {  // B is n×k in memory: the k index is contiguous
        kk = l % TSK;
        q = l / TSK;
      } else {  // B is k×n: columns of op(B) are contiguous
        q = l % TS;
        kk = l / TS;
      }
      const int gq = col0 + q, gk = t + kk;
      T v = (T)0;
      if (gq < n && gk < k) v = trans_b ? b[gq * ldb + gk] : b[gk * ldb + gq];
      bs[kk][q] = v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    // Each work-item owns rows ty + wi·RTS and columns tx + wj·RTS of the tile: strided rather
    // than blocked ownership keeps the local reads of neighbouring work-items contiguous.
    for (int kk = 0; kk < TSK; kk++) {
      T ra[WPT], rb[WPT];
      for (int wi = 0; wi < WPT; wi++) ra[wi] = as[kk][ty + wi * RTS];
      for (int wj = 0; wj < WPT; wj++) rb[wj] = bs[kk][tx + wj * RTS];
      for (int wi = 0; wi < WPT; wi++)
        for (int wj = 0; wj < WPT; wj++) acc[wi][wj] += ra[wi] * rb[wj];
    }
    // The next iteration overwrites the slabs.
    barrier(CLK_LOCAL_MEM_FENCE);
  }

  for (int wi = 0; wi < WPT; wi++) {
    const int r = row0 + ty + wi * RTS;
    for (int wj = 0; wj < WPT; wj++) {
      const int q = col0 + tx + wj * RTS;
      if (r < m && q < n) {
        __global T* cp = c + r * ldc + q;
        // beta == 0 must not read C: it may be uninitialised (even NaN), as with BLAS.
        *cp = beta == (T)0 ? alpha * acc[wi][wj] : alpha * acc[wi][wj] + beta * *cp;
      }
    }
  }
}
