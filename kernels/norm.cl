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
