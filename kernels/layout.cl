// Data-movement kernels: 4-D permutation and strided block copies (slice and concatenation).
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
