// Off x86-64 there is no AVX2 code: `diffeqnet_vector_math_available` says so, and the CPU
// backend never calls the others (they are here so that the module links).

#include "CVectorMath.h"

#if !defined(__x86_64__)

int diffeqnet_vector_math_available(void) { return 0; }

void diffeqnet_tanh(const float *x, float *y, size_t count) {}

void diffeqnet_tanh_gradient(const float *x, const float *dy, float *dx, size_t count) {}

void diffeqnet_group_norm(
    const float *x, const float *gamma, const float *beta, float *y, float *mean, float *rstd,
    int groups, int channelsPerGroup, int hw, float eps, int first, int count) {}

void diffeqnet_group_norm_grad_input(
    const float *x, const float *gamma, const float *mean, const float *rstd, const float *dy,
    float *dx, int groups, int channelsPerGroup, int hw, int first, int count) {}

void diffeqnet_group_norm_grad_params(
    const float *x, const float *mean, const float *rstd, const float *dy, float *dgamma,
    float *dbeta, int n, int channels, int groups, int hw, int first, int count) {}

void diffeqnet_batch_norm(
    const float *x, const float *gamma, const float *beta, float *y, float *mean,
    float *variance, int n, int channels, int hw, float eps, int relu, int first, int count) {}

void diffeqnet_batch_norm_grad(
    const float *x, const float *gamma, const float *mean, const float *variance, const float *y,
    const float *dy, float *dx, float *dgamma, float *dbeta, int n, int channels, int hw,
    float eps, int batchStatistics, int first, int count) {}

#endif
