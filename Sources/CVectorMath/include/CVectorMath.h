#ifndef DIFFEQNET_CVECTORMATH_H
#define DIFFEQNET_CVECTORMATH_H

#include <stddef.h>

/// Float32 tanh and its derivative over arrays, 8 lanes at a time with AVX2 and FMA: tanh is
/// the activation of the small MLP vector fields (torchdiffeq's spiral demo), where it and its
/// derivative cost as much as the matrix products.
///
/// The formulas are the CPU backend's (`Float.fastTanh`, `Float.fastExp` in CPUBackend.swift),
/// so both paths agree to rounding. C, not Swift, for the same reason as CWinograd. Callers
/// check `diffeqnet_vector_math_available()`.

/// 1 when this CPU runs the AVX2 + FMA code, else 0.
int diffeqnet_vector_math_available(void);

/// y[i] = tanh(x[i]) for i < count (Eigen's rational approximation, a few ulps).
void diffeqnet_tanh(const float *x, float *y, size_t count);

/// dx[i] = dy[i]·tanh'(x[i]), with tanh'(x) = 4e/(1 + e)² for e = exp(−2|x|): accurate in the
/// tails, where 1 − tanh² cancels.
void diffeqnet_tanh_gradient(const float *x, const float *dy, float *dx, size_t count);

#endif
