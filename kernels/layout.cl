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
