// Batched row-major GEMM: C = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B) k×n; and the three
// passes of a convolution as implicit GEMMs on the same tiling (below).
//
// Specialised by the host with -D T=float or -D T=double -D USE_FP64, and the tiling:
//   TS   the square output tile per work-group (TS×TS elements of C),
//   WPT  outputs per work-item in each dimension (register blocking: WPT×WPT accumulators),
//   TSK  the depth of the k-slab staged in local memory per iteration.
// The work-group is (TS/WPT)×(TS/WPT) work-items; the host picks the largest configuration whose
// work-group size and local memory the device and the compiled kernel allow.
//
// Launch: global (ceil(n/TS)·TS/WPT, ceil(m/TS)·TS/WPT, batch), local (TS/WPT, TS/WPT, 1).
// Dimension 0 runs along the columns of C so that stores to C are coalesced. vec_a (vec_b) says
// that A's (B's) offset, leading dimension and batch stride are multiples of 4 elements, so that
// its slabs may be staged by aligned vector loads.

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

// A work-item's WPT×WPT accumulators, zeroed.
inline void zero_tile(T acc[WPT][WPT]) {
  for (int wi = 0; wi < WPT; wi++)
    for (int wj = 0; wj < WPT; wj++) acc[wi][wj] = (T)0;
}

// acc += the staged k-slab's products: as[kk][r] holds op(A)[row0 + r, k0 + kk] and bs[kk][q]
// op(B)[k0 + kk, col0 + q]. Each work-item owns rows ty + wi·RTS and columns tx + wj·RTS of the
// tile: strided rather than blocked ownership keeps the local reads of neighbouring work-items
// contiguous.
inline void multiply_slab(
  __local const T as[TSK][TSP], __local const T bs[TSK][TSP], T acc[WPT][WPT], const int tx,
  const int ty) {
  for (int kk = 0; kk < TSK; kk++) {
    T ra[WPT], rb[WPT];
    for (int wi = 0; wi < WPT; wi++) ra[wi] = as[kk][ty + wi * RTS];
    for (int wj = 0; wj < WPT; wj++) rb[wj] = bs[kk][tx + wj * RTS];
    for (int wi = 0; wi < WPT; wi++)
      for (int wj = 0; wj < WPT; wj++) acc[wi][wj] += ra[wi] * rb[wj];
  }
}

#ifdef USE_FP64
#define T4 double4
#else
#define T4 float4
#endif

// p[0 … 3], those at or past `left` as zero. `aligned` (the host's promise that p is a multiple of
// 4 elements from a buffer's start) lets a whole vector be one 16- or 32-byte load; vload4 is
// correct at any element boundary but compiles to scalar loads where alignment is unknown.
inline T4 load4(__global const T* p, const int left, const int aligned) {
  if (left >= 4) return aligned ? *(__global const T4*)p : vload4(0, p);
  T4 v = (T4)0;
  if (left > 0) v.s0 = p[0];
  if (left > 1) v.s1 = p[1];
  if (left > 2) v.s2 = p[2];
  return v;
}

// Stages dst[kk][r] = M[base + r, t + kk] for r < TS and kk < TSK, zero outside rows × k. M's
// element (i, j) lies at p[i·ld + j] when k_contiguous, else at p[j·ld + i]. Consecutive
// work-items read consecutive addresses whichever dimension is contiguous (coalesced), four
// elements at a time where the tile allows.
inline void stage_slab(
  __local T dst[TSK][TSP], __global const T* p, const int ld, const int k_contiguous,
  const int aligned, const int base, const int rows, const int t, const int k, const int tid) {
#if TSK % 4 == 0 && TS % 4 == 0
  if (k_contiguous) {
    for (int l = tid; l < TSK * TS / 4; l += NT) {
      const int kk = (l % (TSK / 4)) * 4, r = l / (TSK / 4);
      const int gr = base + r, gk = t + kk;
      const T4 v = gr < rows ? load4(p + gr * ld + gk, k - gk, aligned) : (T4)0;
      dst[kk][r] = v.s0;
      dst[kk + 1][r] = v.s1;
      dst[kk + 2][r] = v.s2;
      dst[kk + 3][r] = v.s3;
    }
  } else {
    for (int l = tid; l < TSK * TS / 4; l += NT) {
      const int r = (l % (TS / 4)) * 4, kk = l / (TS / 4);
      const int gr = base + r, gk = t + kk;
      const T4 v = gk < k ? load4(p + gk * ld + gr, rows - gr, aligned) : (T4)0;
      dst[kk][r] = v.s0;
      dst[kk][r + 1] = v.s1;
      dst[kk][r + 2] = v.s2;
      dst[kk][r + 3] = v.s3;
    }
  }
#else
  for (int l = tid; l < TSK * TS; l += NT) {
    const int kk = k_contiguous ? l % TSK : l / TS, r = k_contiguous ? l / TSK : l % TS;
    const int gr = base + r, gk = t + kk;
    dst[kk][r] = gr < rows && gk < k ? (k_contiguous ? p[gr * ld + gk] : p[gk * ld + gr]) : (T)0;
  }
#endif
}

__kernel __attribute__((reqd_work_group_size(RTS, RTS, 1)))
void gemm(
  const int m, const int n, const int k, const int trans_a, const int trans_b,
  const T alpha, const T beta,
  __global const T* a, const int offset_a, const int lda, const int stride_a,
  __global const T* b, const int offset_b, const int ldb, const int stride_b,
  __global T* c, const int offset_c, const int ldc, const int stride_c, const int vec_a,
  const int vec_b) {
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
  zero_tile(acc);

  for (int t = 0; t < k; t += TSK) {
    // as[kk][r] = op(A)[row0 + r, t + kk], where op(A)[i, j] lies at a[j·lda + i] when A is
    // transposed; bs likewise with op(B)ᵀ, whose element (q, kk) lies at b[q·ldb + kk] when B is
    // transposed.
    stage_slab(as, a, lda, !trans_a, vec_a, row0, m, t, k, tid);
    stage_slab(bs, b, ldb, trans_b, vec_b, col0, n, t, k, tid);
    barrier(CLK_LOCAL_MEM_FENCE);

    multiply_slab(as, bs, acc, tx, ty);
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

// Convolution as implicit GEMM: the tiled product above with one operand gathered straight from
// the NCHW tensors, so no im2col matrix (9× the input for 3×3) is materialised and the results
// are written in NCHW with the bias added: one launch per convolution pass.
//
// The logical input has ct channels. With has_time, channel 0 is the constant t inside the image
// (zero in the padding: torchdiffeq's ConcatConv2d pads the concatenated tensor) and x holds
// channels 1 … ct − 1; the weights keep the layout [o][ct][kh][kw].

// The logical input at (n, ch, y, z), zero outside the image.
inline T conv_input(
  __global const T* x, const int has_time, const T t, const int n, const int ch, const int y,
  const int z, const int ct, const int h, const int w) {
  if (y < 0 || y >= h || z < 0 || z >= w) return (T)0;
  if (has_time) {
    if (ch == 0) return t;
    return x[((n * (ct - 1) + ch - 1) * h + y) * w + z];
  }
  return x[((n * ct + ch) * h + y) * w + z];
}

// y[n, o, oh, ow] = bias[o] + Σ_{ch, i, j} wt[o, ch, i, j] · in[n, ch, oh·s − p + i, ow·s − p + j]:
// C = W · cols with m = o_n, n = batch·oh_n·ow_n (columns in NCHW order), k = ct·kh·kw.
__kernel __attribute__((reqd_work_group_size(RTS, RTS, 1)))
void conv_forward(
  __global const T* x, __global const T* wt, __global const T* bias, const int has_bias,
  __global T* y, const int has_time, const T t, const int batch, const int ct, const int h,
  const int w, const int o_n, const int kh, const int kw, const int stride, const int pad,
  const int oh_n, const int ow_n) {
  __local T as[TSK][TSP];
  __local T bs[TSK][TSP];
  const int m = o_n, plane = oh_n * ow_n, n = batch * plane, k = ct * kh * kw;
  const int tx = get_local_id(0), ty = get_local_id(1), tid = ty * RTS + tx;
  const int col0 = get_group_id(0) * TS, row0 = get_group_id(1) * TS;
  T acc[WPT][WPT];
  zero_tile(acc);
  for (int t0 = 0; t0 < k; t0 += TSK) {
    for (int l = tid; l < TSK * TS; l += NT) {  // weights: k contiguous
      const int kk = l % TSK, r = l / TSK;
      const int gr = row0 + r, gk = t0 + kk;
      as[kk][r] = gr < m && gk < k ? wt[gr * k + gk] : (T)0;
    }
    for (int l = tid; l < TSK * TS; l += NT) {  // input: consecutive columns, consecutive ow
      const int q = l % TS, kk = l / TS;
      const int gq = col0 + q, gk = t0 + kk;
      T v = (T)0;
      if (gq < n && gk < k) {
        const int ow = gq % ow_n, rest = gq / ow_n, oh = rest % oh_n, b = rest / oh_n;
        const int j = gk % kw, u = gk / kw, i = u % kh, ch = u / kh;
        v = conv_input(x, has_time, t, b, ch, oh * stride - pad + i, ow * stride - pad + j, ct, h, w);
      }
      bs[kk][q] = v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    multiply_slab(as, bs, acc, tx, ty);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (int wi = 0; wi < WPT; wi++) {
    const int r = row0 + ty + wi * RTS;
    for (int wj = 0; wj < WPT; wj++) {
      const int q = col0 + tx + wj * RTS;
      if (r < m && q < n) {
        const int b = q / plane, p = q % plane;
        y[(b * o_n + r) * plane + p] = acc[wi][wj] + (has_bias ? bias[r] : (T)0);
      }
    }
  }
}

// dx[n, c, y, z] = Σ_{o, i, j} wt[o, c + has_time, i, j] · dy[n, o, oh, ow] over the (oh, ow) whose
// window reads (y, z): oh·s = y + p − i, ow·s = z + p − j. m = the channels of x, n = batch·h·w,
// k = o_n·kh·kw; the time channel gets no gradient (it is not an input).
__kernel __attribute__((reqd_work_group_size(RTS, RTS, 1)))
void conv_backward_data(
  __global const T* dy, __global const T* wt, __global T* dx, const int has_time,
  const int batch, const int ct, const int h, const int w, const int o_n, const int kh,
  const int kw, const int stride, const int pad, const int oh_n, const int ow_n) {
  __local T as[TSK][TSP];
  __local T bs[TSK][TSP];
  const int cx = ct - has_time, plane = h * w;
  const int m = cx, n = batch * plane, k = o_n * kh * kw;
  const int tx = get_local_id(0), ty = get_local_id(1), tid = ty * RTS + tx;
  const int col0 = get_group_id(0) * TS, row0 = get_group_id(1) * TS;
  T acc[WPT][WPT];
  zero_tile(acc);
  for (int t0 = 0; t0 < k; t0 += TSK) {
    for (int l = tid; l < TSK * TS; l += NT) {  // weights: (i, j) contiguous
      const int kk = l % TSK, r = l / TSK;
      const int gr = row0 + r, gk = t0 + kk;
      T v = (T)0;
      if (gr < m && gk < k) {
        const int ij = gk % (kh * kw), o = gk / (kh * kw);
        v = wt[(o * ct + gr + has_time) * kh * kw + ij];
      }
      as[kk][r] = v;
    }
    for (int l = tid; l < TSK * TS; l += NT) {  // dy: consecutive columns, consecutive z
      const int q = l % TS, kk = l / TS;
      const int gq = col0 + q, gk = t0 + kk;
      T v = (T)0;
      if (gq < n && gk < k) {
        const int z = gq % w, rest = gq / w, yy = rest % h, b = rest / h;
        const int j = gk % kw, u = gk / kw, i = u % kh, o = u / kh;
        const int ys = yy + pad - i, zs = z + pad - j;
        if (ys >= 0 && zs >= 0 && ys % stride == 0 && zs % stride == 0) {
          const int oh = ys / stride, ow = zs / stride;
          if (oh < oh_n && ow < ow_n) v = dy[((b * o_n + o) * oh_n + oh) * ow_n + ow];
        }
      }
      bs[kk][q] = v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    multiply_slab(as, bs, acc, tx, ty);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (int wi = 0; wi < WPT; wi++) {
    const int r = row0 + ty + wi * RTS;
    for (int wj = 0; wj < WPT; wj++) {
      const int q = col0 + tx + wj * RTS;
      if (r < m && q < n) {
        const int b = q / plane, p = q % plane;
        dx[(b * cx + r) * plane + p] = acc[wi][wj];
      }
    }
  }
}

// dw[o, ch, i, j] = Σ_{n, oh, ow} dy[n, o, oh, ow] · in[n, ch, oh·s − p + i, ow·s − p + j]:
// m = o_n, n = ct·kh·kw, k = batch·oh_n·ow_n, which is long while m·n is small, so the k range is
// split over get_global_id(2) (split-K): split g sums k in [g·chunk, (g + 1)·chunk) into
// out[g·m·n + ·], and the host sums the splits (or, with one split, out is dw). With has_bias,
// one more column of ones gives the bias gradient Σ dy into out_bias[g·m + o].
__kernel __attribute__((reqd_work_group_size(RTS, RTS, 1)))
void conv_backward_weights(
  __global const T* dy, __global const T* x, __global T* out, __global T* out_bias,
  const int has_bias, const int has_time, const T t, const int batch, const int ct, const int h,
  const int w, const int o_n, const int kh, const int kw, const int stride, const int pad,
  const int oh_n, const int ow_n, const int chunk) {
  __local T as[TSK][TSP];
  __local T bs[TSK][TSP];
  const int plane = oh_n * ow_n, patch = ct * kh * kw;
  const int m = o_n, n = patch + has_bias, k = batch * plane;
  const int tx = get_local_id(0), ty = get_local_id(1), tid = ty * RTS + tx;
  const int col0 = get_group_id(0) * TS, row0 = get_group_id(1) * TS;
  const int split = get_global_id(2);
  const int k_begin = split * chunk, k_end = min(k, k_begin + chunk);
  T acc[WPT][WPT];
  zero_tile(acc);
  for (int t0 = k_begin; t0 < k_end; t0 += TSK) {
    for (int l = tid; l < TSK * TS; l += NT) {  // dy: consecutive k, consecutive ow
      const int kk = l % TSK, r = l / TSK;
      const int gr = row0 + r, gk = t0 + kk;
      T v = (T)0;
      if (gr < m && gk < k_end) {
        const int b = gk / plane, p = gk % plane;
        v = dy[(b * o_n + gr) * plane + p];
      }
      as[kk][r] = v;
    }
    for (int l = tid; l < TSK * TS; l += NT) {  // input: consecutive k, consecutive ow
      const int kk = l % TSK, q = l / TSK;
      const int gq = col0 + q, gk = t0 + kk;
      T v = (T)0;
      if (gq < patch && gk < k_end) {
        const int ow = gk % ow_n, rest = gk / ow_n, oh = rest % oh_n, b = rest / oh_n;
        const int j = gq % kw, u = gq / kw, i = u % kh, ch = u / kh;
        v = conv_input(x, has_time, t, b, ch, oh * stride - pad + i, ow * stride - pad + j, ct, h, w);
      } else if (gq < n && gk < k_end) {
        v = (T)1;  // the bias column: Σ dy
      }
      bs[kk][q] = v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    multiply_slab(as, bs, acc, tx, ty);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  out += (long)split * m * patch;
  out_bias += (long)split * m;
  for (int wi = 0; wi < WPT; wi++) {
    const int r = row0 + ty + wi * RTS;
    for (int wj = 0; wj < WPT; wj++) {
      const int q = col0 + tx + wj * RTS;
      if (r < m && q < patch) out[r * patch + q] = acc[wi][wj];
      else if (r < m && q < n) out_bias[r] = acc[wi][wj];
    }
  }
}
