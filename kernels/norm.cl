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
