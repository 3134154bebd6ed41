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
