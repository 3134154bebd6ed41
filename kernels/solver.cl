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
