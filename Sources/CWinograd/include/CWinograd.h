#ifndef DIFFEQNET_CWINOGRAD_H
#define DIFFEQNET_CWINOGRAD_H

#include <stddef.h>

/// Winograd convolution in float32 for x86-64 CPUs with AVX2 and FMA: the 3×3 stride-1
/// convolutions of ODE-Net- and ResNet-sized networks in fewer multiplications than a direct
/// (im2col + GEMM) convolution, with a register-blocked GEMM micro-kernel that reads the
/// transformed tiles where the transform wrote them (no packing per call).
///
/// `tile` selects the algorithm: F(2×2, 3×3) (`tile` = 2: 2.25× fewer multiplications, AVX2
/// transforms) or F(4×4, 3×3) (`tile` = 4: 4× fewer, AVX-512 transforms, so only with `wide`).
/// `wide` selects the GEMM micro-kernel: AVX2 (0) or AVX-512 (1). Calls that share data must
/// pass the same `tile` and `wide`.
///
/// This is C, not Swift, because Swift cannot compile one function for AVX2 and FMA while the
/// rest of the module stays baseline x86-64; the functions here carry the target attribute and
/// callers check `diffeqnet_winograd_available()` first.
///
/// All arrays are dense row-major float32. The geometry: input [images, channels, height,
/// width], zero padding `pad` (0, 1 or 2) on every side, stride 1, output [images,
/// outChannels, height + 2·pad − 2, width + 2·pad − 2].

/// 1 when this CPU runs the AVX2 + FMA code, else 0.
int diffeqnet_winograd_available(void);

/// 1 when this CPU and its OS also run the AVX-512 code, which the functions below take with
/// `wide` = 1 (and `tile` = 4), else 0.
int diffeqnet_winograd_wide_available(void);

/// Panels of output channels in a kernel packed for the micro-kernel that `wide` selects (6
/// channels each with AVX2, 8 with AVX-512).
int diffeqnet_winograd_kernel_panels(int outChannels, int wide);

/// Floats of a kernel packed by `diffeqnet_winograd_pack_kernel` for the micro-kernel that
/// `wide` selects.
size_t diffeqnet_winograd_packed_kernel_count(
    int outChannels, int inChannels, int tile, int wide);

/// Packs U = G g Gᵀ of every 3×3 kernel g for the micro-kernel that `wide` selects; the
/// forward pass must be called with the same `wide`.
///
/// With `transposeFlip` = 0, `w` is a forward kernel [outChannels, inChannels, 3, 3] and
/// g[o][c] = w[o][c]. With 1, `w` is [inChannels, outChannels, 3, 3] and g[o][c] is
/// w[c][o] rotated by 180°: the kernel whose stride-1 convolution of dy with padding 2 − p is
/// the data gradient of a forward convolution with padding p.
///
/// Only the panels firstPanel ..< firstPanel + panelCount are written (all of them: 0 and
/// `diffeqnet_winograd_kernel_panels(outChannels, wide)`), so that callers can split the work.
void diffeqnet_winograd_pack_kernel(
    const float *w, int outChannels, int inChannels, int transposeFlip, int tile, int wide,
    float *packed, int firstPanel, int panelCount);

/// Floats of scratch memory `diffeqnet_winograd_forward` needs for up to `images` images.
size_t diffeqnet_winograd_scratch_count(
    int images, int channels, int height, int width, int outChannels, int pad, int tile);

/// y = conv(x, g) + bias[o] for `images` images, g packed by `diffeqnet_winograd_pack_kernel`;
/// `bias` may be NULL (no bias term). `scratch` holds `diffeqnet_winograd_scratch_count(...)`
/// floats, private to the caller.
void diffeqnet_winograd_forward(
    const float *packed, const float *bias, const float *x, float *y, int images, int channels,
    int height, int width, int outChannels, int pad, int tile, int wide, float *scratch);

/// Floats of the transformed kernel gradient dUᵀ [α²][inChannels][outChannels] that
/// `diffeqnet_winograd_weight_gradient` accumulates (α² = (tile + 2)²).
size_t diffeqnet_winograd_weight_gradient_count(int outChannels, int inChannels, int tile);

/// Floats of scratch memory `diffeqnet_winograd_weight_gradient` needs for up to `images` images
/// (more than the forward pass: the transformed gradient tiles as well).
size_t diffeqnet_winograd_weight_scratch_count(
    int images, int channels, int height, int width, int outChannels, int pad, int tile);

/// dU_ξ[o][c] (+)= Σ_tiles (A dy Aᵀ)_ξ · (Bᵀ x B)_ξ over the tiles of `images` images, stored
/// transposed (dUᵀ_ξ[c][o]): the
/// gradient of the forward convolution's loss with respect to its transformed kernel U. It
/// overwrites `transformedGradient` when `accumulate` is 0 and adds to it otherwise.
void diffeqnet_winograd_weight_gradient(
    const float *x, const float *dy, int images, int channels, int height, int width,
    int outChannels, int pad, float *transformedGradient, int accumulate, int tile, int wide,
    float *scratch);

/// dw [outChannels, inChannels, 3, 3] = Gᵀ (Σ_k dU_k) G, the sum over `count` arrays dU laid
/// out consecutively, each as filled by `diffeqnet_winograd_weight_gradient`; only the output
/// channels firstOut ..< firstOut + outCount, so that callers can split the work.
void diffeqnet_winograd_finish_weight_gradient(
    const float *transformedGradients, int count, int outChannels, int inChannels, int tile,
    float *dw, int firstOut, int outCount);

#endif
