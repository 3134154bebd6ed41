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
