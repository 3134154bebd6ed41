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
