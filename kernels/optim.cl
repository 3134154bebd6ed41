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
