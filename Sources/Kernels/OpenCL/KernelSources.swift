// GENERATED FILE — DO NOT EDIT. Regenerate with scripts/embed-kernels.sh.
//
// The OpenCL C sources of kernels/*.cl, keyed by file name without the extension. The .cl
// files are the source of truth; KernelSourcesTests fails when this file is stale. Public so
// that tests (built without @testable) can compare it with the files.

public enum KernelSources {
  public static let all: [String: String] = [
    "conv": #"""
// Convolution lowering (im2col and its adjoint col2im) and average pooling, NCHW.
//
// Specialised by the host with -D T=float or -D T=double -D USE_FP64.

// cols[(ch·kh + i)·kw + j, (b·oh_n + oh)·ow_n + ow] = x[b, ch, oh·s − p + i, ow·s − p + j], zero
// outside the image. A 2-D range: dimension 0 the column (contiguous in cols: coalesced stores),
// dimension 1 the patch row.
__kernel void im2col(
  __global const T* x, __global T* cols, const int c, const int h, const int w, const int kh,
  const int kw, const int stride, const int pad, const int oh_n, const int ow_n,
  const int columns, const int patch) {
  const int col = get_global_id(0);
  const int row = get_global_id(1);
  if (col >= columns || row >= patch) return;
  const int ow = col % ow_n;
  const int t = col / ow_n;
  const int oh = t % oh_n;
  const int b = t / oh_n;
  const int j = row % kw;
  const int u = row / kw;
  const int i = u % kh;
  const int ch = u / kh;
  const int y = oh * stride - pad + i;
  const int z = ow * stride - pad + j;
  T v = (T)0;
  if (y >= 0 && y < h && z >= 0 && z < w) v = x[((b * c + ch) * h + y) * w + z];
  cols[(long)row * columns + col] = v;
}

// The adjoint of im2col as a gather: each work-item owns one element of x and sums the cols
// entries that read it, so no atomics are needed and x is simply overwritten. Entry (i, j) of the
// window read pixel (y, z) from output (oh, ow) iff y + p − i = oh·s and z + p − j = ow·s.
__kernel void col2im(
  __global const T* cols, __global T* x, const int c, const int h, const int w, const int kh,
  const int kw, const int stride, const int pad, const int oh_n, const int ow_n,
  const int columns, const int count) {
  const int gid = get_global_id(0);
  if (gid >= count) return;
  const int z = gid % w;
  int t = gid / w;
  const int y = t % h;
  t /= h;
  const int ch = t % c;
  const int b = t / c;
  T acc = (T)0;
  for (int i = 0; i < kh; i++) {
    const int ys = y + pad - i;
    if (ys < 0 || ys % stride != 0) continue;
    const int oh = ys / stride;
    if (oh >= oh_n) continue;
    for (int j = 0; j < kw; j++) {
      const int zs = z + pad - j;
      if (zs < 0 || zs % stride != 0) continue;
      const int ow = zs / stride;
      if (ow >= ow_n) continue;
      const int row = (ch * kh + i) * kw + j;
      acc += cols[(long)row * columns + (b * oh_n + oh) * ow_n + ow];
    }
  }
  x[gid] = acc;
}

// y[b, ch, oh, ow] = mean of the k×k window at (oh·s, ow·s); one work-item per output element.
__kernel void avg_pool(
  __global const T* x, __global T* y, const int h, const int w, const int k, const int stride,
  const int oh_n, const int ow_n, const int count) {
  const int gid = get_global_id(0);
  if (gid >= count) return;
  const int ow = gid % ow_n;
  const int t = gid / ow_n;
  const int oh = t % oh_n;
  const int plane = t / oh_n;
  __global const T* xp = x + (long)plane * h * w + (oh * stride) * w + ow * stride;
  T acc = (T)0;
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) acc += xp[i * w + j];
  y[gid] = acc / (T)(k * k);
}

// dx[b, ch, y, z] = Σ over the windows containing (y, z) of dy / k², as a gather (no atomics;
// pixels no window covers get zero). Window oh covers rows oh·s ≤ y < oh·s + k.
__kernel void avg_pool_grad(
  __global const T* dy, __global T* dx, const int h, const int w, const int k, const int stride,
  const int oh_n, const int ow_n, const int count) {
  const int gid = get_global_id(0);
  if (gid >= count) return;
  const int z = gid % w;
  const int t = gid / w;
  const int y = t % h;
  const int plane = t / h;
  const int oh_lo = y >= k ? (y - k) / stride + 1 : 0;
  const int oh_hi = min(y / stride, oh_n - 1);
  const int ow_lo = z >= k ? (z - k) / stride + 1 : 0;
  const int ow_hi = min(z / stride, ow_n - 1);
  __global const T* dyp = dy + (long)plane * oh_n * ow_n;
  T acc = (T)0;
  for (int oh = oh_lo; oh <= oh_hi; oh++)
    for (int ow = ow_lo; ow <= ow_hi; ow++) acc += dyp[oh * ow_n + ow];
  dx[gid] = acc / (T)(k * k);
}

"""#,
    "elementwise": #"""
// Element-wise kernels: fill, unary functions and their derivatives, affine maps, broadcasting
// binary operations and the dropout mask. One work-item per output element; the host pads the
// global size up to a multiple of the work-group size, so every kernel guards with `count`.
//
// Specialised by the host with -D T=float or -D T=double -D USE_FP64.

// Must match the raw values of `UnaryOp` in Backend.swift.
#define OP_NEG 0
#define OP_RELU 1
#define OP_TANH 2
#define OP_SIGMOID 3
#define OP_SOFTPLUS 4
#define OP_ELU 5
#define OP_EXP 6
#define OP_LOG 7
#define OP_SQUARE 8
#define OP_SQRT 9
#define OP_ABS 10
#define OP_RECIPROCAL 11

// Must match the raw values of `BinaryOp` in Backend.swift.
#define OP_ADD 0
#define OP_SUB 1
#define OP_MUL 2
#define OP_DIV 3
#define OP_MAXIMUM 4

__kernel void fill(__global T* y, const T value, const int count) {
  const int i = get_global_id(0);
  if (i < count) y[i] = value;
}

// Helpers here and in the other programs are plain functions rather than `inline`: under C99
// inline semantics an `inline` definition provides no out-of-line copy, which some OpenCL
// compilers then fail to link when they decline to inline. They inline them anyway.

// Evaluated without overflow for large |x|: exp is only ever taken of a non-positive argument.
T sigmoid_of(const T x) {
  if (x >= (T)0) return (T)1 / ((T)1 + exp(-x));
  const T e = exp(x);
  return e / ((T)1 + e);
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|), stable for both signs.
T softplus_of(const T x) { return fmax(x, (T)0) + log1p(exp(-fabs(x))); }

// σ'(x) = σ(x)·(1 − σ(x)) = e/(1 + e)² with e = e^-|x|: no cancellation in 1 − σ for large |x|.
T sigmoid_derivative(const T x) {
  const T e = exp(-fabs(x));
  const T d = (T)1 + e;
  return e / (d * d);
}

// tanh'(x) = 1 − tanh²(x) = sech²(x) = 4e/(1 + e)² with e = e^-2|x|: accurate where tanh ≈ ±1.
T tanh_derivative(const T x) {
  const T e = exp((T)-2 * fabs(x));
  const T d = (T)1 + e;
  return (T)4 * e / (d * d);
}

// Conventions at kinks: relu'(0) = 0, abs'(0) = 0; elu uses alpha = 1.
T unary_apply(const int op, const T x) {
  switch (op) {
    case OP_NEG: return -x;
    case OP_RELU: return x > (T)0 ? x : (T)0;
    case OP_TANH: return tanh(x);
    case OP_SIGMOID: return sigmoid_of(x);
    case OP_SOFTPLUS: return softplus_of(x);
    case OP_ELU: return x > (T)0 ? x : expm1(x);
    case OP_EXP: return exp(x);
    case OP_LOG: return log(x);
    case OP_SQUARE: return x * x;
    case OP_SQRT: return sqrt(x);
    case OP_ABS: return fabs(x);
    case OP_RECIPROCAL: return (T)1 / x;
    default: return (T)NAN;
  }
}

// dy · f'(x).
T unary_grad_apply(const int op, const T x, const T dy) {
  switch (op) {
    case OP_NEG: return -dy;
    case OP_RELU: return x > (T)0 ? dy : (T)0;
    case OP_TANH: return dy * tanh_derivative(x);
    case OP_SIGMOID: return dy * sigmoid_derivative(x);
    case OP_SOFTPLUS: return dy * sigmoid_of(x);
    case OP_ELU: return x > (T)0 ? dy : dy * exp(x);
    case OP_EXP: return dy * exp(x);
    case OP_LOG: return dy / x;
    case OP_SQUARE: return dy * (T)2 * x;
    case OP_SQRT: return dy / ((T)2 * sqrt(x));
    case OP_ABS: return dy * sign(x);
    case OP_RECIPROCAL: return -dy / (x * x);
    default: return (T)NAN;
  }
}

// The operation is a kernel argument rather than a -D option: the switch is uniform across the
// work-group (no divergence), and one program serves every operation.
__kernel void unary(
  const int op, __global const T* x, __global T* y, const int count) {
  const int i = get_global_id(0);
  if (i < count) y[i] = unary_apply(op, x[i]);
}

__kernel void unary_grad(
  const int op, __global const T* x, __global const T* dy, __global T* dx, const int count) {
  const int i = get_global_id(0);
  if (i < count) dx[i] = unary_grad_apply(op, x[i], dy[i]);
}

__kernel void affine(
  __global const T* x, __global T* y, const T scale, const T shift, const int count) {
  const int i = get_global_id(0);
  if (i < count) y[i] = scale * x[i] + shift;
}

T binary_apply(const int op, const T a, const T b) {
  switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return a / b;
    case OP_MAXIMUM: return fmax(a, b);
    default: return (T)NAN;
  }
}

// Same-shape operands: the common case, without index arithmetic.
__kernel void binary_flat(
  const int op, __global const T* a, __global const T* b, __global T* out, const int count) {
  const int i = get_global_id(0);
  if (i < count) out[i] = binary_apply(op, a[i], b[i]);
}

// Broadcasting over four dimensions: output element (i0, i1, i2, i3) of shape (s0, s1, s2, s3)
// reads a at Σ ik·ak and b at Σ ik·bk (a broadcast dimension has stride 0).
__kernel void binary_broadcast(
  const int op, __global const T* a, __global const T* b, __global T* out,
  const int s1, const int s2, const int s3,
  const int a0, const int a1, const int a2, const int a3,
  const int b0, const int b1, const int b2, const int b3, const int count) {
  const int i = get_global_id(0);
  if (i >= count) return;
  int t = i;
  const int i3 = t % s3;
  t /= s3;
  const int i2 = t % s2;
  t /= s2;
  const int i1 = t % s1;
  const int i0 = t / s1;
  const int ia = i0 * a0 + i1 * a1 + i2 * a2 + i3 * a3;
  const int ib = i0 * b0 + i1 * b1 + i2 * b2 + i3 * b3;
  out[i] = binary_apply(op, a[ia], b[ib]);
}

// Dropout mask from a counter-based hash, so that every backend draws the same mask:
//
//   uint h = i * 0x9E3779B1u ^ seed;   // i: the element index, wrapping 32-bit arithmetic
//   h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; h ^= h >> 16;
//   u = (h >> 8) * (1.0 / 16777216.0); // u in [0, 1) from the top 24 bits
//   keep iff u >= p;  y = keep ? 1 / (1 - p) : 0
//
// u = k / 2^24 with k = h >> 8, so `u >= p` (in double) is exactly `k >= ceil(p · 2^24)`: the host
// passes that integer threshold, which keeps the comparison exact whatever T is, and the scale
// 1 / (1 - p) computed in double and rounded to T.
uint dropout_hash(const uint i, const uint seed) {
  uint h = i * 0x9E3779B1u ^ seed;
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

__kernel void dropout_mask(
  __global T* y, const uint seed, const uint threshold, const T scale, const int count) {
  const int i = get_global_id(0);
  if (i >= count) return;
  const uint k = dropout_hash((uint)i, seed) >> 8;
  y[i] = k >= threshold ? scale : (T)0;
}

"""#,
    "gemm": #"""
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

"""#,
    "layout": #"""
// Data-movement kernels: 4-D permutation, strided block copies (slice and concatenation) and
// packing several buffers into one.
//
// Specialised by the host with -D T=float or -D T=double -D USE_FP64.

// One work-item per output element, so writes are coalesced; (d1, d2, d3) are the trailing output
// dimensions and (t0..t3) the input strides of the input dimensions that output dimensions 0..3
// come from.
__kernel void permute(
  __global const T* x, __global T* y, const int d1, const int d2, const int d3,
  const int t0, const int t1, const int t2, const int t3, const int count) {
  const int i = get_global_id(0);
  if (i >= count) return;
  int r = i;
  const int j3 = r % d3;
  r /= d3;
  const int j2 = r % d2;
  r /= d2;
  const int j1 = r % d1;
  const int j0 = r / d1;
  y[i] = x[j0 * t0 + j1 * t1 + j2 * t2 + j3 * t3];
}

// A 2-D range: dimension 0 walks the run (contiguous, coalesced), dimension 1 the blocks.
__kernel void copy_blocks(
  __global const T* x, __global T* y, const int length, const int src_offset,
  const int src_stride, const int dst_offset, const int dst_stride, const int blocks) {
  const int i = get_global_id(0);
  const int b = get_global_id(1);
  if (i >= length || b >= blocks) return;
  y[dst_offset + b * dst_stride + i] = x[src_offset + b * src_stride + i];
}

// y[o_k + i] = x_k[i] for i < c_k and k < terms: up to 16 buffers gathered into one in one launch
// (a parameter gradient into its flat buffer). One work-item per element of [o_0, end), so reads
// and writes are coalesced; an item in the padding between two ranges writes nothing. The
// offsets ascend; unused slots are bound to x0 and never read.
__kernel void pack(
  __global T* y, const int begin, const int end, const int terms,
  __global const T* x0, __global const T* x1, __global const T* x2, __global const T* x3,
  __global const T* x4, __global const T* x5, __global const T* x6, __global const T* x7,
  __global const T* x8, __global const T* x9, __global const T* x10, __global const T* x11,
  __global const T* x12, __global const T* x13, __global const T* x14, __global const T* x15,
  const int o0, const int o1, const int o2, const int o3, const int o4, const int o5,
  const int o6, const int o7, const int o8, const int o9, const int o10, const int o11,
  const int o12, const int o13, const int o14, const int o15,
  const int c0, const int c1, const int c2, const int c3, const int c4, const int c5,
  const int c6, const int c7, const int c8, const int c9, const int c10, const int c11,
  const int c12, const int c13, const int c14, const int c15) {
  const int j = begin + get_global_id(0);
  if (j >= end) return;
  const int o[16] = {o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15};
  const int c[16] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15};
  int k = 0;
  for (int s = 1; s < terms; s++) k += (j >= o[s]);
  const int i = j - o[k];
  if (i >= c[k]) return;
  T v;
  switch (k) {
    case 0: v = x0[i]; break;
    case 1: v = x1[i]; break;
    case 2: v = x2[i]; break;
    case 3: v = x3[i]; break;
    case 4: v = x4[i]; break;
    case 5: v = x5[i]; break;
    case 6: v = x6[i]; break;
    case 7: v = x7[i]; break;
    case 8: v = x8[i]; break;
    case 9: v = x9[i]; break;
    case 10: v = x10[i]; break;
    case 11: v = x11[i]; break;
    case 12: v = x12[i]; break;
    case 13: v = x13[i]; break;
    case 14: v = x14[i]; break;
    default: v = x15[i]; break;
  }
  y[j] = v;
}

"""#,
    "norm": #"""
// Group normalisation (forward and gradients) and row-wise softmax with cross-entropy.
//
// Specialised by the host with -D T=float or -D T=double -D USE_FP64, and -D WG=<work-group size>
// (a power of two the device and kernel allow) sizing the local-memory reductions. Every kernel
// here that uses barriers is launched with exactly (groups of work) · WG work-items: no partial
// work-groups, and no work-item leaves before a barrier.

// The sum of v over the work-group, returned to every work-item. All work-items must call it
// (it holds barriers); `scratch` may be reused after it returns.
T wg_sum(T v, __local T* scratch) {
  const int lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const T r = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

// The maximum of v over the work-group, with the same contract as wg_sum.
T wg_max(T v, __local T* scratch) {
  const int lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const T r = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

// dy[i], or with relu dy[i]·[y[i] > 0] (relu'(0) = 0, as `unary_grad`).
inline T masked(__global const T* dy, __global const T* y, const int relu, const long i) {
  return relu && !(y[i] > (T)0) ? (T)0 : dy[i];
}

// One work-group per (sample, group). In NCHW the group's cpg·hw elements are one contiguous span
// starting at (sample·G + group)·span, so the loads are coalesced. The variance is computed in a
// second pass around the mean (biased, over the span), which avoids the cancellation of E[x²]−μ².
// With relu, y = max(0, ·) (a NaN becoming 0, as `unary`'s relu): the ReLU that follows most
// group norms, without a launch of its own.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm(
  __global const T* x, __global const T* gamma, __global const T* beta, __global T* y,
  __global T* mean, __global T* rstd, const int c, const int hw, const int groups, const T eps,
  const int relu) {
  __local T scratch[WG];
  const int lid = get_local_id(0);
  const int ng = get_group_id(0);
  const int cpg = c / groups;
  const int span = cpg * hw;
  const int c0 = (ng % groups) * cpg;
  const long base = (long)ng * span;

  T s = (T)0;
  for (int e = lid; e < span; e += WG) s += x[base + e];
  const T mu = wg_sum(s, scratch) / (T)span;
  T q = (T)0;
  for (int e = lid; e < span; e += WG) {
    const T d = x[base + e] - mu;
    q += d * d;
  }
  const T rs = (T)1 / sqrt(wg_sum(q, scratch) / (T)span + eps);
  for (int e = lid; e < span; e += WG) {
    const int ch = c0 + e / hw;
    const T v = (x[base + e] - mu) * rs * gamma[ch] + beta[ch];
    y[base + e] = relu && !(v > (T)0) ? (T)0 : v;
  }
  if (lid == 0) {
    mean[ng] = mu;
    rstd[ng] = rs;
  }
}

// dx for one (sample, group) per work-group. With x̂ = (x − μ)·rstd and g = dy·γ_c, averaging over
// the group's span: dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)). With relu, dy is first masked by
// the forward output y: relu'(pre) = [y > 0].
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_grad_input(
  __global const T* x, __global const T* gamma, __global const T* mean, __global const T* rstd,
  __global const T* dy, __global const T* y, const int relu, __global T* dx, const int c,
  const int hw, const int groups) {
  __local T scratch[WG];
  const int lid = get_local_id(0);
  const int ng = get_group_id(0);
  const int cpg = c / groups;
  const int span = cpg * hw;
  const int c0 = (ng % groups) * cpg;
  const long base = (long)ng * span;
  const T mu = mean[ng];
  const T rs = rstd[ng];

  T s1 = (T)0, s2 = (T)0;
  for (int e = lid; e < span; e += WG) {
    const T g = masked(dy, y, relu, base + e) * gamma[c0 + e / hw];
    s1 += g;
    s2 += g * (x[base + e] - mu) * rs;
  }
  const T mg = wg_sum(s1, scratch) / (T)span;
  const T mgx = wg_sum(s2, scratch) / (T)span;
  for (int e = lid; e < span; e += WG) {
    const T g = masked(dy, y, relu, base + e) * gamma[c0 + e / hw];
    const T xh = (x[base + e] - mu) * rs;
    dx[base + e] = rs * (g - mg - xh * mgx);
  }
}

// dgamma[c] = Σ_{b, i} dy·x̂ and dbeta[c] = Σ_{b, i} dy, one work-group per channel: each sample's
// hw run of the channel is contiguous, so the loads are coalesced for hw ≥ WG.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_grad_params(
  __global const T* x, __global const T* mean, __global const T* rstd, __global const T* dy,
  __global const T* y, const int relu, __global T* dgamma, __global T* dbeta, const int n,
  const int c, const int hw, const int groups) {
  __local T scratch[WG];
  const int lid = get_local_id(0);
  const int ch = get_group_id(0);
  const int g = ch / (c / groups);
  const int total = n * hw;
  T sg = (T)0, sb = (T)0;
  for (int e = lid; e < total; e += WG) {
    const int b = e / hw;
    const long idx = ((long)b * c + ch) * hw + (e - b * hw);
    const int ng = b * groups + g;
    const T d = masked(dy, y, relu, idx);
    sb += d;
    sg += d * (x[idx] - mean[ng]) * rstd[ng];
  }
  const T tg = wg_sum(sg, scratch);
  const T tb = wg_sum(sb, scratch);
  if (lid == 0) {
    dgamma[ch] = tg;
    dbeta[ch] = tb;
  }
}

// The loss of one row from its max, its Σ exp(l − max) and its label:
// −log p[label] = log Σ + max − l[label], which stays finite when p[label] underflows. A label that
// is not a valid class index gives NaN, so the mistake cannot pass unnoticed.
T cross_entropy(__global const T* lr, const int classes, const T label, const T mx,
                       const T sum) {
  // Range first: converting an out-of-range value to int is undefined.
  if (!(label >= (T)0 && label < (T)classes)) return (T)NAN;
  const int y = (int)label;
  if ((T)y != label) return (T)NAN;
  return log(sum) + mx - lr[y];
}

// Few classes: one work-item per row (a work-group would leave most of its work-items idle).
__kernel void softmax_ce_rows(
  __global const T* logits, __global const T* labels, __global T* probs, __global T* losses,
  const int rows, const int classes) {
  const int r = get_global_id(0);
  if (r >= rows) return;
  __global const T* lr = logits + (long)r * classes;
  __global T* pr = probs + (long)r * classes;
  T mx = -INFINITY;
  for (int j = 0; j < classes; j++) mx = fmax(mx, lr[j]);
  T sum = (T)0;
  for (int j = 0; j < classes; j++) sum += exp(lr[j] - mx);
  const T inv = (T)1 / sum;
  for (int j = 0; j < classes; j++) pr[j] = exp(lr[j] - mx) * inv;
  losses[r] = cross_entropy(lr, classes, labels[r], mx, sum);
}

// dlogits[r, j] = (probs[r, j] − [j = label_r]) · cotangent[0] / rows, one work-item per element:
// the loss's gradient without a one-hot matrix from the host. A label that is no class index
// subtracts nothing (its loss is already NaN).
__kernel void softmax_ce_grad(
  __global const T* probs, __global const T* labels, __global const T* cotangent,
  __global T* dlogits, const int rows, const int classes) {
  const int i = get_global_id(0);
  if (i >= rows * classes) return;
  const int r = i / classes, j = i % classes;
  const T label = labels[r];
  const T hit = label == (T)j ? (T)1 : (T)0;
  dlogits[i] = (probs[i] - hit) * cotangent[0] / (T)rows;
}

// Many classes: one work-group per row with local-memory max and sum reductions.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void softmax_ce_wg(
  __global const T* logits, __global const T* labels, __global T* probs, __global T* losses,
  const int classes) {
  __local T scratch[WG];
  const int lid = get_local_id(0);
  const int r = get_group_id(0);
  __global const T* lr = logits + (long)r * classes;
  __global T* pr = probs + (long)r * classes;
  T m = -INFINITY;
  for (int j = lid; j < classes; j += WG) m = fmax(m, lr[j]);
  const T mx = wg_max(m, scratch);
  T s = (T)0;
  for (int j = lid; j < classes; j += WG) s += exp(lr[j] - mx);
  const T sum = wg_sum(s, scratch);
  const T inv = (T)1 / sum;
  for (int j = lid; j < classes; j += WG) pr[j] = exp(lr[j] - mx) * inv;
  if (lid == 0) losses[r] = cross_entropy(lr, classes, labels[r], mx, sum);
}

// Batch normalisation in training mode, one work-group per channel: the channel's values are n
// contiguous runs of hw in NCHW, so consecutive work-items read consecutive elements of a run
// (coalesced for hw ≥ WG). Two passes: the mean, then the biased variance around it. With
// has_running, work-item 0 also writes the new running averages (the variance's unbiased by
// m/(m − 1)), so a training step's statistics cost no second launch. With relu, y is
// max(0, ·) of the normalised value (the ReLU that follows the norm, in the same pass).
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void batch_norm_train(
  __global const T* x, __global const T* gamma, __global const T* beta, __global T* y,
  __global T* mean, __global T* variance, __global const T* running_mean,
  __global const T* running_variance, __global T* new_mean, __global T* new_variance,
  const int n, const int c, const int hw, const T eps, const T momentum,
  const int has_running, const int relu) {
  __local T scratch[WG];
  const int lid = get_local_id(0);
  const int ch = get_group_id(0);
  const int total = n * hw;
  T s = (T)0;
  for (int e = lid; e < total; e += WG) {
    const int b = e / hw;
    s += x[((long)b * c + ch) * hw + (e - b * hw)];
  }
  const T mu = wg_sum(s, scratch) / (T)total;
  T q = (T)0;
  for (int e = lid; e < total; e += WG) {
    const int b = e / hw;
    const T d = x[((long)b * c + ch) * hw + (e - b * hw)] - mu;
    q += d * d;
  }
  const T squares = wg_sum(q, scratch);
  const T var = squares / (T)total;
  const T a = gamma[ch] / sqrt(var + eps);
  const T shift = beta[ch] - mu * a;
  for (int e = lid; e < total; e += WG) {
    const int b = e / hw;
    const long idx = ((long)b * c + ch) * hw + (e - b * hw);
    const T v = x[idx] * a + shift;
    y[idx] = relu ? fmax(v, (T)0) : v;
  }
  if (lid == 0) {
    mean[ch] = mu;
    variance[ch] = var;
    if (has_running) {
      const T unbiased = total > 1 ? squares / (T)(total - 1) : var;
      new_mean[ch] = ((T)1 - momentum) * running_mean[ch] + momentum * mu;
      new_variance[ch] = ((T)1 - momentum) * running_variance[ch] + momentum * unbiased;
    }
  }
}

// Batch normalisation with given statistics (evaluation), one work-item per element.
__kernel void batch_norm_apply(
  __global const T* x, __global const T* gamma, __global const T* beta, __global const T* mean,
  __global const T* variance, __global T* y, const int c, const int hw, const int count,
  const T eps) {
  const int i = get_global_id(0);
  if (i >= count) return;
  const int ch = (i / hw) % c;
  const T a = gamma[ch] / sqrt(variance[ch] + eps);
  y[i] = (x[i] - mean[ch]) * a + beta[ch];
}

// The gradients of batch normalisation, one work-group per channel: dbeta = Σ dy and
// dgamma = Σ dy·x̂ in one pass, then dx = γ·rstd·(dy − dbeta/m − x̂·dgamma/m) with the batch's
// statistics (batch_statistics), or γ·rstd·dy with constant ones. With relu, dy is first
// masked by [y > 0], y the fused ReLU's output, as it is read.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void batch_norm_grad(
  __global const T* x, __global const T* gamma, __global const T* mean,
  __global const T* variance, __global const T* y, __global const T* dy, __global T* dx,
  __global T* dgamma, __global T* dbeta, const int n, const int c, const int hw, const T eps,
  const int batch_statistics, const int relu) {
  __local T scratch[WG];
  const int lid = get_local_id(0);
  const int ch = get_group_id(0);
  const int total = n * hw;
  const T mu = mean[ch];
  const T rs = (T)1 / sqrt(variance[ch] + eps);
  T sb = (T)0, sg = (T)0;
  for (int e = lid; e < total; e += WG) {
    const int b = e / hw;
    const long idx = ((long)b * c + ch) * hw + (e - b * hw);
    const T d = relu && y[idx] <= (T)0 ? (T)0 : dy[idx];
    sb += d;
    sg += d * (x[idx] - mu);
  }
  const T db = wg_sum(sb, scratch);
  const T dg = wg_sum(sg, scratch) * rs;
  if (lid == 0) {
    dgamma[ch] = dg;
    dbeta[ch] = db;
  }
  const T a = gamma[ch] * rs;
  const T mean_dy = batch_statistics ? db / (T)total : (T)0;
  const T mean_dyx = batch_statistics ? dg / (T)total * rs : (T)0;
  for (int e = lid; e < total; e += WG) {
    const int b = e / hw;
    const long idx = ((long)b * c + ch) * hw + (e - b * hw);
    const T d = relu && y[idx] <= (T)0 ? (T)0 : dy[idx];
    dx[idx] = a * (d - mean_dy - (x[idx] - mu) * mean_dyx);
  }
}

"""#,
    "optim": #"""
// Optimiser updates, element-wise and in place (see `OptimizerStep` in Backend.swift).
//
// Specialised by the host with -D T=float or -D T=double -D USE_FP64.

// g' = g + wd·p; v = momentum·v + g'; p −= lr·(nesterov ? g' + momentum·v : v).
__kernel void sgd(
  __global T* param, __global const T* grad, __global T* vel, const T lr, const T momentum,
  const T weight_decay, const int nesterov, const int count) {
  const int i = get_global_id(0);
  if (i >= count) return;
  const T p = param[i];
  const T g = grad[i] + weight_decay * p;
  const T v = momentum * vel[i] + g;
  vel[i] = v;
  param[i] = p - lr * (nesterov ? g + momentum * v : v);
}

// Adam, and AdamW when `decoupled`. The host computes in double, then rounds to T: the
// complements c1 = 1 − β1 and c2 = 1 − β2 (in float, 1 − (float)0.999 is off by 1e-5 relative)
// and the bias corrections bc1 = 1 − β1^t and bc2 = 1 − β2^t.
__kernel void adam(
  __global T* param, __global const T* grad, __global T* m1, __global T* m2, const T lr,
  const T beta1, const T beta2, const T c1, const T c2, const T eps, const T weight_decay,
  const int decoupled, const T bc1, const T bc2, const int count) {
  const int i = get_global_id(0);
  if (i >= count) return;
  T p = param[i];
  T g = grad[i];
  if (decoupled)
    p -= lr * weight_decay * p;
  else
    g += weight_decay * p;
  const T m = beta1 * m1[i] + c1 * g;
  const T v = beta2 * m2[i] + c2 * g * g;
  m1[i] = m;
  m2[i] = v;
  param[i] = p - lr * (m / bc1) / (sqrt(v / bc2) + eps);
}

// v = α·v + (1 − α)·g²; p −= lr·g/(√v + ε), with c = 1 − α from the host (see adam).
__kernel void rmsprop(
  __global T* param, __global const T* grad, __global T* sq, const T lr, const T alpha,
  const T c, const T eps, const int count) {
  const int i = get_global_id(0);
  if (i >= count) return;
  const T g = grad[i];
  const T v = alpha * sq[i] + c * g * g;
  sq[i] = v;
  param[i] = param[i] - lr * g / (sqrt(v) + eps);
}

"""#,
    "prelude": #"""
// Prepended by the host to every program below: the element type T and, for kernels that size
// local-memory trees, the work-group size WG, both chosen with -D options
// (-D T=float, or -D T=double -D USE_FP64; -D WG=<power of two the device and kernel allow>).

#ifdef USE_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef T
#error "T must be defined: -D T=float or -D T=double"
#endif
#ifndef WG
#define WG 256
#endif


"""#,
    "reduce": #"""
// Sum reductions of x viewed as [outer, n, inner] over the middle axis, scaled.
//
// Specialised by the host with -D T=float or -D T=double -D USE_FP64, and -D WG=<work-group size>
// (a power of two the device and kernel allow) sizing the local-memory tree.

// inner == 1: the reduced axis is contiguous. One work-group per output row; each work-item sums a
// strided slice (consecutive work-items read consecutive elements: coalesced), then a tree in
// local memory. The host launches exactly outer·WG work-items, so no work-group is partial and
// every work-item reaches every barrier.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void reduce_rows(__global const T* x, __global T* y, const int n, const T scale) {
  __local T partial[WG];
  const int lid = get_local_id(0);
  const int row = get_group_id(0);
  __global const T* xr = x + (long)row * n;
  T acc = (T)0;
  for (int j = lid; j < n; j += WG) acc += xr[j];
  partial[lid] = acc;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) partial[lid] += partial[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) y[row] = partial[0] * scale;
}

// The first pass of a long-row reduction (few rows, n large): work-group g = row·parts + part sums
// the part-th of `parts` contiguous chunks of its row into partial[g], unscaled, so that the
// whole device works on a single row; a second launch of reduce_rows sums the parts.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void reduce_row_parts(__global const T* x, __global T* partial, const int n, const int parts) {
  __local T local_sums[WG];
  const int lid = get_local_id(0);
  const int g = get_group_id(0);
  const int row = g / parts;
  const int part = g - row * parts;
  const int chunk = (n + parts - 1) / parts;
  const int begin = part * chunk;
  const int end = min(n, begin + chunk);
  __global const T* xr = x + (long)row * n;
  T acc = (T)0;
  for (int j = begin + lid; j < end; j += WG) acc += xr[j];
  local_sums[lid] = acc;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) local_sums[lid] += local_sums[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) partial[g] = local_sums[0];
}

// inner > 1 (or a short reduced axis): one work-item per output element (o, i); neighbouring
// work-items take neighbouring i, so each step of the loop over j is a coalesced row read.
__kernel void reduce_cols(
  __global const T* x, __global T* y, const int n, const int inner, const T scale,
  const int count) {
  const int gid = get_global_id(0);
  if (gid >= count) return;
  const int o = gid / inner;
  const int i = gid - o * inner;
  __global const T* xo = x + (long)o * n * inner + i;
  T acc = (T)0;
  for (int j = 0; j < n; j++) acc += xo[(long)j * inner];
  y[gid] = acc * scale;
}

"""#,
    "solver": #"""
// The fused arithmetic of the ODE solvers: a linear combination of up to eight vectors (Runge–Kutta
// stage inputs, step solutions, multistep updates) and the scaled error norm of an adaptive step.
//
// Specialised by the host with -D T=float or -D T=double -D USE_FP64, and -D WG=<work-group size>
// (a power of two the device and kernel allow) sizing the error norm's local-memory tree.

// y[i] = Σ_{k < terms} ck·xk[i] for 1 ≤ terms ≤ 8, one work-item per element (coalesced), summed
// in the order k = 0, 1, … like the CPU backend. The host binds unused slots to x0 with
// coefficient 0, but they are skipped rather than multiplied by zero: 0·inf and 0·NaN are NaN, so
// an unused slot must never contribute. The branches are uniform across the launch, so they cost
// no divergence.
//
// Longer combinations are chained by the host: later launches pass y itself as x0 with c0 = 1. That
// is safe because each work-item reads all its inputs at index i before writing y[i], and no other
// work-item touches index i.
__kernel void linear_combination(
  __global T* y, const int count, const int terms,
  __global const T* x0, __global const T* x1, __global const T* x2, __global const T* x3,
  __global const T* x4, __global const T* x5, __global const T* x6, __global const T* x7,
  const T c0, const T c1, const T c2, const T c3, const T c4, const T c5, const T c6,
  const T c7) {
  const int i = get_global_id(0);
  if (i >= count) return;
  T acc = c0 * x0[i];
  if (terms > 1) acc += c1 * x1[i];
  if (terms > 2) acc += c2 * x2[i];
  if (terms > 3) acc += c3 * x3[i];
  if (terms > 4) acc += c4 * x4[i];
  if (terms > 5) acc += c5 * x5[i];
  if (terms > 6) acc += c6 * x6[i];
  if (terms > 7) acc += c7 * x7[i];
  y[i] = acc;
}

// max(a, b) that propagates NaN (fmax would drop it): a NaN solution must make the error norm NaN
// so that the adaptive controller rejects the step instead of accepting a finite-looking norm.
T max_propagating_nan(const T a, const T b) { return (a >= b || isnan(a)) ? a : b; }

// partials[offset + g] = Σ_i (err[i] / (atol + rtol·max(|y0[i]|, |y1[i]|)))² over the elements i
// that work-group g visits (the host packs several vectors' partials into one buffer, read once).
//
// The host launches a fixed number of work-groups of exactly WG work-items and sums the partials in
// double. Each work-item walks the vector with a grid-stride loop (consecutive work-items read
// consecutive elements: coalesced), so a few groups cover any length and the host reads back only
// a few hundred values. The loop bound is the only guard: every work-item, including those with no
// elements, reaches every barrier of the tree. Accumulation is in T.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void scaled_error_squared_sum(
  __global const T* err, __global const T* y0, __global const T* y1, const T atol, const T rtol,
  const int count, __global T* partials, const int offset) {
  __local T scratch[WG];
  const int lid = get_local_id(0);
  // Unsigned: i + stride may pass INT_MAX when count is close to it, which would be undefined for
  // int; count + stride stays far below UINT_MAX.
  const uint n = (uint)count;
  const uint stride = (uint)get_global_size(0);
  T acc = (T)0;
  for (uint i = (uint)get_global_id(0); i < n; i += stride) {
    const T scale = atol + rtol * max_propagating_nan(fabs(y0[i]), fabs(y1[i]));
    const T v = err[i] / scale;
    acc += v * v;
  }
  scratch[lid] = acc;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) partials[offset + get_group_id(0)] = scratch[0];
}

// The LM-ResNet update y = (1 − k)·u + k·previous + scale·branch, k read from the device (a
// trainable parameter: no host round trip), one work-item per element. has_branch = 0 (a block
// dropped by stochastic depth) leaves the branch unread.
__kernel void lm_update(
  __global const T* u, __global const T* previous, __global const T* branch,
  __global const T* k, const T scale, __global T* y, const int count, const int has_branch) {
  const int i = get_global_id(0);
  if (i >= count) return;
  const T kv = k[0];
  T acc = ((T)1 - kv) * u[i] + kv * previous[i];
  if (has_branch) acc += scale * branch[i];
  y[i] = acc;
}

// The adjoint of lm_update: du = (1 − k)·dy, dprevious = k·dy, dbranch = scale·dy (each where its
// flag is set), and partials[g] = Σ dy·(previous − u) over the elements work-group g visits, by a
// grid-stride loop over a fixed number of groups of exactly WG work-items (see
// scaled_error_squared_sum); the host sums the partials on the device into dk.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void lm_update_grad(
  __global const T* u, __global const T* previous, __global const T* k, __global const T* dy,
  __global T* du, __global T* dprevious, __global T* dbranch, __global T* partials,
  const T scale, const int count, const int flags) {
  __local T scratch[WG];
  const int lid = get_local_id(0);
  const uint n = (uint)count;
  const uint stride = (uint)get_global_size(0);
  const T kv = k[0];
  T acc = (T)0;
  for (uint i = (uint)get_global_id(0); i < n; i += stride) {
    const T g = dy[i];
    if (flags & 1) du[i] = ((T)1 - kv) * g;
    if (flags & 2) dprevious[i] = kv * g;
    if (flags & 4) dbranch[i] = scale * g;
    acc += g * (previous[i] - u[i]);
  }
  if (flags & 8) {
    scratch[lid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = WG / 2; s > 0; s >>= 1) {
      if (lid < s) scratch[lid] += scratch[lid + s];
      barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) partials[get_group_id(0)] = scratch[0];
  }
}

"""#,
  ]
}
