#ifndef DIFFEQNET_CVECTORMATH_H
#define DIFFEQNET_CVECTORMATH_H

#include <stddef.h>

/// Float32 tanh and its derivative over arrays, and group and batch normalisation, 8 lanes at a
/// time with AVX2 and FMA: tanh is the activation of the small MLP vector fields (torchdiffeq's
/// spiral demo), where it and its derivative cost as much as the matrix products; group norm,
/// between ODE-Net's convolutions, and batch norm, between the CIFAR ResNets', ran as 4-lane SSE
/// in Swift.
///
/// The formulas are the CPU backend's (`Float.fastTanh`, `Float.fastExp` in CPUBackend.swift,
/// `CPUBackend.groupNorm`, `CPUBackend.batchNorm`), so both paths agree to rounding. C, not Swift, for the same reason
/// as CWinograd. Callers check `diffeqnet_vector_math_available()`.

/// 1 when this CPU runs the AVX2 + FMA code, else 0.
int diffeqnet_vector_math_available(void);

/// y[i] = tanh(x[i]) for i < count (Eigen's rational approximation, a few ulps).
void diffeqnet_tanh(const float *x, float *y, size_t count);

/// dx[i] = dy[i]·tanh'(x[i]), with tanh'(x) = 4e/(1 + e)² for e = exp(−2|x|): accurate in the
/// tails, where 1 − tanh² cancels.
void diffeqnet_tanh_gradient(const float *x, const float *dy, float *dx, size_t count);

/// Group normalisation of float32 x [n, channels, hw] in groups of `channelsPerGroup` channels
/// (`groups` per image), for the (image, group) pairs first ..< first + count of the n·groups:
/// mean[ng] and rstd[ng] = 1/√(variance + eps), the variance about the mean (two passes), and
/// y = (x − mean)·rstd·gamma[c] + beta[c]. As `CPUBackend.groupNorm`.
void diffeqnet_group_norm(
    const float *x, const float *gamma, const float *beta, float *y, float *mean, float *rstd,
    int groups, int channelsPerGroup, int hw, float eps, int first, int count);

/// dx = rstd·(γ·dy − mean(γ·dy) − x̂·mean(γ·dy·x̂)) over each (image, group) pair
/// first ..< first + count, x̂ = (x − mean)·rstd, the means over the pair's elements.
void diffeqnet_group_norm_grad_input(
    const float *x, const float *gamma, const float *mean, const float *rstd, const float *dy,
    float *dx, int groups, int channelsPerGroup, int hw, int first, int count);

/// dgamma[c] = Σ dy·x̂ and dbeta[c] = Σ dy over the n images, for channels first ..< first +
/// count.
void diffeqnet_group_norm_grad_params(
    const float *x, const float *mean, const float *rstd, const float *dy, float *dgamma,
    float *dbeta, int n, int channels, int groups, int hw, int first, int count);

/// Batch normalisation in training mode of float32 x [n, channels, hw] for channels first ..<
/// first + count: mean[c], the biased variance[c] (about the mean, two passes), and
/// y = (x − mean)·γ/√(variance + eps) + β, then max(0, ·) when relu ≠ 0. As
/// `CPUBackend.batchNorm`, which updates the running statistics.
void diffeqnet_batch_norm(
    const float *x, const float *gamma, const float *beta, float *y, float *mean,
    float *variance, int n, int channels, int hw, float eps, int relu, int first, int count);

/// Its gradient for channels first ..< first + count, with g = dy, or dy·[y > 0] when y (the
/// fused ReLU's output) is not NULL: dbeta[c] = Σ g, dgamma[c] = Σ g·x̂, and dx = γ·rstd·(g −
/// dbeta/M − x̂·dgamma/M) with batch statistics, dx = γ·rstd·g with running ones
/// (batchStatistics = 0); x̂ = (x − mean)·rstd, M = n·hw. dx may alias dy.
void diffeqnet_batch_norm_grad(
    const float *x, const float *gamma, const float *mean, const float *variance, const float *y,
    const float *dy, float *dx, float *dgamma, float *dbeta, int n, int channels, int hw,
    float eps, int batchStatistics, int first, int count);

#endif
