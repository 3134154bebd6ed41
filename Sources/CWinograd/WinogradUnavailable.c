// Off x86-64 there are no AVX2 kernels: `diffeqnet_winograd_available` says so, and the CPU
// backend never calls the others (they are here so that the module links).

#include "CWinograd.h"

#if !defined(__x86_64__)

int diffeqnet_winograd_available(void) { return 0; }

int diffeqnet_winograd_wide_available(void) { return 0; }

int diffeqnet_winograd_kernel_panels(int outChannels, int wide) { return 0; }

size_t diffeqnet_winograd_packed_kernel_count(
    int outChannels, int inChannels, int tile, int wide) {
  return 0;
}

void diffeqnet_winograd_pack_kernel(
    const float *w, int outChannels, int inChannels, int transposeFlip, int tile, int wide,
    float *packed, int firstPanel, int panelCount) {}

size_t diffeqnet_winograd_scratch_count(
    int images, int channels, int height, int width, int outChannels, int pad, int tile) {
  return 0;
}

void diffeqnet_winograd_forward(
    const float *packed, const float *bias, const float *x, float *y, int images, int channels,
    int height, int width, int outChannels, int pad, int tile, int wide, float *scratch) {}

size_t diffeqnet_winograd_weight_gradient_count(int outChannels, int inChannels, int tile) {
  return 0;
}

size_t diffeqnet_winograd_weight_scratch_count(
    int images, int channels, int height, int width, int outChannels, int pad, int tile) {
  return 0;
}

void diffeqnet_winograd_weight_gradient(
    const float *x, const float *dy, int images, int channels, int height, int width,
    int outChannels, int pad, float *transformedGradient, int accumulate, int tile, int wide,
    float *scratch) {}

void diffeqnet_winograd_finish_weight_gradient(
    const float *transformedGradients, int count, int outChannels, int inChannels, int tile,
    float *dw, int firstOut, int outCount) {}

#endif
