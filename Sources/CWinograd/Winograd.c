// Winograd F(2×2, 3×3): each 2×2 output tile Y of a 3×3 convolution is
//
//   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
//
// where d_c is the 4×4 input patch of channel c under the tile and
//
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 −1 −1].
//
// The sum over channels at each of the 16 positions ξ of the 4×4 transformed tile is a matrix
// product M_ξ [O, tiles] = U_ξ [O, C] · V_ξ [C, tiles]: 16 products with 16·O·C·tiles
// multiply-adds in all, against 36·O·C·tiles for the direct convolution.
//
// Layout, for a chunk of images whose tiles are numbered t = image·T + ty·TX + tx:
//   packed kernel  U[ξ][O/MR][C][MR] MR output channels side by side (the micro-kernel's rows)
//   V              V[C][ξ][ldt]      transformed input tiles, tiles contiguous
//   M              M[O][ξ][ldt]      products before the output transform
// ldt is the tile count rounded up to whole 32-tile panels plus slack, so that 8-lane stores
// and loads past the last tile stay inside the buffer. A channel's 16 rows are adjacent, so the
// transforms, which touch all 16 ξ of a tile at once, stay within a few kilobytes; channels are
// `block` = 16·ldt + 16 floats apart, an odd number of cache lines, so that the GEMM's column
// of 65 or so rows at that stride spreads over all L1 sets instead of a few.

#include "CWinograd.h"
#include "CSIMDSupport.h"

#if defined(__x86_64__)  // elsewhere: WinogradUnavailable.c

#include <immintrin.h>
#include <string.h>

// MR × NR is the micro-kernel's block: 6 output channels by 16 tiles with AVX2 (twelve of its
// sixteen 8-lane registers accumulate), 8 by 32 with AVX-512 (`MR_WIDE`, `NR_WIDE`: sixteen of
// thirty-two 16-lane registers; 8 rows divide the 16, 32 and 64 channels of a CIFAR ResNet's
// stages, where 6 computed 18 rows for 16). The tile layout is planned for the wider kernel on
// every CPU.
enum { MR = 6, MR_WIDE = 8, NR = 16, NR_WIDE = 32, LANES = 8 };

/// The micro-kernel's rows: the width of the packed kernel's panels.
static int microRows(int wide) { return wide ? MR_WIDE : MR; }

static int roundUp(int v, int m) { return (v + m - 1) / m * m; }

int diffeqnet_winograd_available(void) { return diffeqnet_cpu_has_avx2_fma(); }

int diffeqnet_winograd_wide_available(void) { return diffeqnet_cpu_has_avx512f(); }

int diffeqnet_winograd_kernel_panels(int outChannels, int wide) {
  return roundUp(outChannels, microRows(wide)) / microRows(wide);
}

size_t diffeqnet_winograd_packed_kernel_count(int outChannels, int inChannels, int wide) {
  return (size_t)16 * (size_t)roundUp(outChannels, microRows(wide)) * (size_t)inChannels;
}

void diffeqnet_winograd_pack_kernel(
    const float *w, int outChannels, int inChannels, int transposeFlip, int wide, float *packed,
    int firstPanel, int panelCount) {
  const int mr = microRows(wide);
  const int panels = roundUp(outChannels, mr) / mr;
  for (int xi = 0; xi < 16; xi++) {  // zero first: the last panel's rows past outChannels stay 0
    memset(packed + ((size_t)xi * panels + firstPanel) * inChannels * mr, 0,
           (size_t)panelCount * inChannels * mr * sizeof(float));
  }
  const int end = (firstPanel + panelCount) * mr < outChannels ? (firstPanel + panelCount) * mr
                                                               : outChannels;
  for (int o = firstPanel * mr; o < end; o++) {
    for (int c = 0; c < inChannels; c++) {
      float g[3][3];
      for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
          g[i][j] = transposeFlip ? w[((size_t)c * outChannels + o) * 9 + (2 - i) * 3 + (2 - j)]
                                  : w[((size_t)o * inChannels + c) * 9 + i * 3 + j];
        }
      }
      float t[4][3];  // G g
      for (int j = 0; j < 3; j++) {
        t[0][j] = g[0][j];
        t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      for (int i = 0; i < 4; i++) {  // (G g) Gᵀ
        const float u[4] = {
            t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
            t[i][2]};
        for (int j = 0; j < 4; j++) {
          const size_t xi = (size_t)(i * 4 + j);
          packed[((xi * panels + o / mr) * inChannels + c) * mr + o % mr] = u[j];
        }
      }
    }
  }
}

/// The sizes of one chunk's work.
typedef struct {
  int channels, height, width, outChannels, pad;
  int outHeight, outWidth;
  int tileRows, tileColumns;  // TY, TX
  int tilesPerImage;          // T
  int pairRows;               // 1 when TX ≤ 4: a group of 8 lanes holds two tile rows of 4
  int ldt;                    // row length of V and M
  size_t block;               // distance between channels in V and M: 16·ldt + 16
  int padRows, padColumns;    // the zero-bordered copy of one channel
  size_t padPlane;            // padRows · padColumns
  size_t padCount;            // room for every channel's copy: padPlane · max(C, O), rounded up
} Plan;

static Plan makePlan(int images, int channels, int height, int width, int outChannels, int pad) {
  Plan p;
  p.channels = channels;
  p.height = height;
  p.width = width;
  p.outChannels = outChannels;
  p.pad = pad;
  p.outHeight = height + 2 * pad - 2;
  p.outWidth = width + 2 * pad - 2;
  p.tileRows = (p.outHeight + 1) / 2;
  p.tileColumns = (p.outWidth + 1) / 2;
  p.tilesPerImage = p.tileRows * p.tileColumns;
  // Slack of a panel: the last 8-lane store or load may start at the last tile.
  p.ldt = roundUp(images * p.tilesPerImage, NR_WIDE) + NR_WIDE;
  // A row stride that is a multiple of 4 KiB would put every row of a panel in one L1 set.
  p.block = (size_t)16 * p.ldt + 16;  // plus one cache line
  p.pairRows = p.tileColumns <= 4;
  // A paired group reads two tile rows, the second past the end when TY is odd.
  p.padRows = 2 * roundUp(p.tileRows, 2) + 2;
  // Tile columns are transformed 8 at a time: the last group reads up to 2·TXr + 3.
  p.padColumns = 2 * roundUp(p.tileColumns, LANES) + 4;
  p.padPlane = (size_t)p.padRows * p.padColumns;
  // Whole cache lines, so that what follows in the scratch (the weight gradient's panels, which
  // the micro-kernel reads 16 floats at a time) starts on one.
  const size_t planes = (size_t)(channels > outChannels ? channels : outChannels);
  p.padCount = (p.padPlane * planes + 15) / 16 * 16;
  return p;
}

size_t diffeqnet_winograd_scratch_count(
    int images, int channels, int height, int width, int outChannels, int pad) {
  const Plan p = makePlan(images, channels, height, width, outChannels, pad);
  return p.block * (size_t)(channels + outChannels) + p.padCount;
}

/// Lanes 0..3 of u[2l] and lanes 4..7 of w[2(l − 4)] (even), likewise u[2l + 1] and
/// w[2(l − 4) + 1] (odd). With w = u + 8 that is 8 consecutive tiles of one tile row; with w two
/// pixel rows below u, the first 4 tiles of two tile rows.
__attribute__((target("avx2,fma"))) static inline void deinterleave(
    const float *u, const float *w, __m256 *even, __m256 *odd) {
  const __m256 a = _mm256_loadu_ps(u), b = _mm256_loadu_ps(w);
  // Within each 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6]; then the 64-bit pairs reordered.
  *even = _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  *odd = _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

/// dst[r · stride + col] = src[r · columns + col]: a plane into the interior of its zero-bordered
/// copy (rows too short for memcpy calls to pay).
static inline void copyPlane(const float *src, int rows, int columns, float *dst, int stride) {
  for (int r = 0; r < rows; r++) {
    for (int col = 0; col < columns; col++) {
      dst[(size_t)r * stride + col] = src[(size_t)r * columns + col];
    }
  }
}

/// A paired group's lanes hold tiles [row ty: 0..3 | row ty + 1: 0..3]; the tiles are numbered
/// ty·TX + tx. `packed` moves lanes to [ty: 0..<TX, ty + 1: 0..<TX, …] (the order in V and M),
/// `spread` back.
__attribute__((target("avx2,fma"))) static inline __m256i pairedPacking(int tx) {
  int index[LANES];
  for (int l = 0; l < LANES; l++) index[l] = l < tx ? l : (l < 2 * tx ? 4 + l - tx : 7);
  return _mm256_loadu_si256((const __m256i *)index);
}

__attribute__((target("avx2,fma"))) static inline __m256i pairedSpreading(int tx) {
  int index[LANES];
  for (int l = 0; l < LANES; l++) index[l] = l < 4 ? l : tx + l - 4;
  return _mm256_loadu_si256((const __m256i *)index);
}

/// V[c][ξ][image·T + tile] = (Bᵀ d B)[ξ] for every tile of one image, 8 tiles (one tile row, or
/// two when they are at most 4 tiles wide) at a time. `padded` holds padCount floats, zero
/// outside the interiors this function writes. A group of 8 that runs past the row's end spills
/// into the next row's (or image's) first slots, which are written later; the loops go in
/// increasing tile order so that the correct value lands last.
__attribute__((target("avx2,fma"))) static void transformInput(
    const Plan *p, const float *x, int image, float *v, float *padded) {
  const size_t plane = (size_t)p->ldt;  // from one ξ's row to the next
  const __m256i packing = pairedPacking(p->tileColumns);
  // Every channel is copied before any is read: reading a row right after storing it would
  // stall on store-to-load forwarding (8-float loads over 4-float stores).
  for (int c = 0; c < p->channels; c++) {
    copyPlane(x + (size_t)c * p->height * p->width, p->height, p->width,
              padded + (size_t)c * p->padPlane + (size_t)p->pad * p->padColumns + p->pad,
              p->padColumns);
  }
  for (int c = 0; c < p->channels; c++) {
    const float *pc = padded + (size_t)c * p->padPlane;
    float *vc = v + (size_t)c * p->block + (size_t)image * p->tilesPerImage;
    for (int ty = 0; ty < p->tileRows; ty += 1 + p->pairRows) {
      for (int tx = 0; tx < p->tileColumns; tx += LANES) {
        __m256 d[4][4];
        for (int i = 0; i < 4; i++) {
          const float *row = pc + (size_t)(2 * ty + i) * p->padColumns + 2 * tx;
          const float *second = p->pairRows ? row + 2 * p->padColumns : row + 8;
          deinterleave(row, second, &d[i][0], &d[i][1]);
          deinterleave(row + 2, second + 2, &d[i][2], &d[i][3]);
          if (p->pairRows) {
            for (int j = 0; j < 4; j++) d[i][j] = _mm256_permutevar8x32_ps(d[i][j], packing);
          }
        }
        __m256 t[4][4];  // Bᵀ d
        for (int j = 0; j < 4; j++) {
          t[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
          t[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
          t[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
          t[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
        }
        float *out = vc + ty * p->tileColumns + tx;
        for (int i = 0; i < 4; i++) {  // (Bᵀ d) B
          _mm256_storeu_ps(out + (size_t)(4 * i + 0) * plane, _mm256_sub_ps(t[i][0], t[i][2]));
          _mm256_storeu_ps(out + (size_t)(4 * i + 1) * plane, _mm256_add_ps(t[i][1], t[i][2]));
          _mm256_storeu_ps(out + (size_t)(4 * i + 2) * plane, _mm256_sub_ps(t[i][2], t[i][1]));
          _mm256_storeu_ps(out + (size_t)(4 * i + 3) * plane, _mm256_sub_ps(t[i][1], t[i][3]));
        }
      }
    }
  }
}

/// The first `count` (0...8) lanes of v to dst.
__attribute__((target("avx2,fma"))) static inline void storePrefix(
    float *dst, __m256 v, int count) {
  if (count == LANES) {
    _mm256_storeu_ps(dst, v);
  } else if (count > 0) {
    _mm256_maskstore_ps(dst, diffeqnet_prefix_mask(count), v);
  }
}

/// y[o] = Aᵀ M A + bias[o] (bias may be NULL) for every tile of one image, in the groups of
/// `transformInput`.
__attribute__((target("avx2,fma"))) static void transformOutput(
    const Plan *p, const float *m, int image, float *y, const float *bias) {
  const size_t plane = (size_t)p->ldt;  // from one ξ's row to the next
  const __m256i spreading = pairedSpreading(p->tileColumns);
  for (int o = 0; o < p->outChannels; o++) {
    const float *mo = m + (size_t)o * p->block + (size_t)image * p->tilesPerImage;
    float *yo = y + (size_t)o * p->outHeight * p->outWidth;
    const __m256 shift = _mm256_set1_ps(bias ? bias[o] : 0.0f);
    for (int ty = 0; ty < p->tileRows; ty += 1 + p->pairRows) {
      for (int tx = 0; tx < p->tileColumns; tx += LANES) {
        const float *in = mo + ty * p->tileColumns + tx;
        __m256 t[2][4];  // Aᵀ M
        for (int j = 0; j < 4; j++) {
          const __m256 m0 = _mm256_loadu_ps(in + (size_t)(0 + j) * plane);
          const __m256 m1 = _mm256_loadu_ps(in + (size_t)(4 + j) * plane);
          const __m256 m2 = _mm256_loadu_ps(in + (size_t)(8 + j) * plane);
          const __m256 m3 = _mm256_loadu_ps(in + (size_t)(12 + j) * plane);
          t[0][j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
          t[1][j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
        }
        const int columns = p->outWidth - 2 * tx < 2 * LANES ? p->outWidth - 2 * tx : 2 * LANES;
        for (int a = 0; a < 2 && 2 * ty + a < p->outHeight; a++) {  // (Aᵀ M) A
          __m256 left = _mm256_add_ps(_mm256_add_ps(t[a][0], t[a][1]), t[a][2]);
          __m256 right = _mm256_sub_ps(_mm256_sub_ps(t[a][1], t[a][2]), t[a][3]);
          left = _mm256_add_ps(left, shift);
          right = _mm256_add_ps(right, shift);
          if (p->pairRows) {
            left = _mm256_permutevar8x32_ps(left, spreading);
            right = _mm256_permutevar8x32_ps(right, spreading);
          }
          // Interleave the tiles' two columns: [l0 r0 l1 r1 …].
          const __m256 lo = _mm256_unpacklo_ps(left, right), hi = _mm256_unpackhi_ps(left, right);
          const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20);
          const __m256 second = _mm256_permute2f128_ps(lo, hi, 0x31);
          float *dst = yo + (size_t)(2 * ty + a) * p->outWidth + 2 * tx;
          if (p->pairRows) {  // first: tiles of row ty; second: of row ty + 1
            storePrefix(dst, first, columns);
            if (ty + 1 < p->tileRows && 2 * ty + 2 + a < p->outHeight) {
              storePrefix(dst + 2 * (size_t)p->outWidth, second, columns);
            }
          } else if (columns >= LANES) {
            _mm256_storeu_ps(dst, first);
            storePrefix(dst + LANES, second, columns - LANES);
          } else {
            storePrefix(dst, first, columns);
          }
        }
      }
    }
  }
}

/// C[rows × columns] (+)= Σ_k A[k][0..<6] ⊗ B[k][0..<16] for a 6-row panel of packed A and a
/// 16-column panel of B (row stride ldb): twelve 8-lane accumulators, two loads and six
/// broadcasts per k. Adds to C when `accumulate` is nonzero, else overwrites it.
__attribute__((target("avx2,fma"))) static void microKernel(
    int depth, const float *restrict a, const float *restrict b, size_t ldb, float *restrict c,
    size_t ldc, int rows, int columns, int accumulate) {
  __m256 acc[MR][2];  // kept in registers: every index below is a constant after unrolling
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int k = 0; k < depth; k++) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
      const __m256 s = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(s, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(s, b1, acc[r][1]);
    }
    a += MR;
    b += ldb;
  }
  if (columns == NR) {
    for (int r = 0; r < rows; r++) {
      __m256 lo = acc[r][0], hi = acc[r][1];
      if (accumulate) {
        lo = _mm256_add_ps(lo, _mm256_loadu_ps(c + r * ldc));
        hi = _mm256_add_ps(hi, _mm256_loadu_ps(c + r * ldc + 8));
      }
      _mm256_storeu_ps(c + r * ldc, lo);
      _mm256_storeu_ps(c + r * ldc + 8, hi);
    }
    return;
  }
  const int rest = columns > LANES ? columns - LANES : 0;
  const __m256i first = diffeqnet_prefix_mask(columns), second = diffeqnet_prefix_mask(rest);
  for (int r = 0; r < rows; r++) {
    __m256 lo = acc[r][0], hi = acc[r][1];
    if (accumulate) {
      lo = _mm256_add_ps(lo, _mm256_maskload_ps(c + r * ldc, first));
      hi = _mm256_add_ps(hi, _mm256_maskload_ps(c + r * ldc + 8, second));
    }
    _mm256_maskstore_ps(c + r * ldc, first, lo);
    _mm256_maskstore_ps(c + r * ldc + 8, second, hi);
  }
}

/// `microKernel` with AVX-512 over `halves` (1 or 2, a constant after inlining) 16-lane
/// accumulators per row: twelve accumulators cover a 32-column panel of B (row stride ldb) as
/// the AVX2 kernel's cover 16; a last panel of at most 16 columns takes six.
__attribute__((target("avx512f,avx2,fma"))) static inline void microKernelWideBody(
    int halves, int depth, const float *restrict a, const float *restrict b, size_t ldb,
    float *restrict c, size_t ldc, int rows, int columns, int accumulate) {
  __m512 acc[MR_WIDE][2];
  for (int r = 0; r < MR_WIDE; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int k = 0; k < depth; k++) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = halves == 2 ? _mm512_loadu_ps(b + 16) : b0;
#pragma clang loop unroll(full)
    for (int r = 0; r < MR_WIDE; r++) {
      const __m512 s = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(s, b0, acc[r][0]);
      if (halves == 2) acc[r][1] = _mm512_fmadd_ps(s, b1, acc[r][1]);
    }
    a += MR_WIDE;
    b += ldb;
  }
  // The lanes of each half that lie inside the `columns` of C.
  const int rest = columns > 16 ? columns - 16 : 0;
  const __mmask16 first = columns >= 16 ? 0xFFFF : (__mmask16)((1u << columns) - 1);
  const __mmask16 second = rest >= 16 ? 0xFFFF : (__mmask16)((1u << rest) - 1);
  for (int r = 0; r < rows; r++) {
    for (int h = 0; h < halves; h++) {
      const __mmask16 mask = h == 0 ? first : second;
      float *dst = c + r * ldc + 16 * h;
      __m512 v = acc[r][h];
      if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
      _mm512_mask_storeu_ps(dst, mask, v);
    }
  }
}

__attribute__((target("avx512f,avx2,fma"))) static void microKernelWide(
    int depth, const float *restrict a, const float *restrict b, size_t ldb, float *restrict c,
    size_t ldc, int rows, int columns, int accumulate) {
  if (columns > 16) {
    microKernelWideBody(2, depth, a, b, ldb, c, ldc, rows, columns, accumulate);
  } else {
    microKernelWideBody(1, depth, a, b, ldb, c, ldc, rows, columns, accumulate);
  }
}

/// The micro-kernel and its panel width (NR or NR_WIDE).
typedef void MicroKernel(int, const float *, const float *, size_t, float *, size_t, int, int, int);

static MicroKernel *selectMicroKernel(int wide, int *width) {
  *width = wide ? NR_WIDE : NR;
  return wide ? microKernelWide : microKernel;
}

__attribute__((target("avx2,fma"))) void diffeqnet_winograd_forward(
    const float *packed, const float *bias, const float *x, float *y, int images, int channels,
    int height, int width, int outChannels, int pad, int wide, float *scratch) {
  const Plan p = makePlan(images, channels, height, width, outChannels, pad);
  float *v = scratch;
  float *m = v + p.block * channels;
  float *padded = m + p.block * outChannels;
  const int tiles = images * p.tilesPerImage;
  int nr;
  MicroKernel *kernel = selectMicroKernel(wide, &nr);
  const int tilePanels = (tiles + nr - 1) / nr;
  const int mr = microRows(wide);
  const int rowPanels = roundUp(outChannels, mr) / mr;

  memset(padded, 0, p.padCount * sizeof(float));
  for (int n = 0; n < images; n++) {
    transformInput(&p, x + (size_t)n * channels * height * width, n, v, padded);
  }
  // The last panel's columns past the last tile must be finite (they are computed, then
  // dropped); the 8-lane spill wrote some of them, the rest may hold anything.
  for (int row = 0; row < 16 * channels; row++) {
    float *tail = v + (size_t)(row / 16) * p.block + (size_t)(row % 16) * p.ldt + tiles;
    memset(tail, 0, (size_t)(tilePanels * nr - tiles) * sizeof(float));
  }
  for (int xi = 0; xi < 16; xi++) {
    const float *u = packed + (size_t)xi * rowPanels * mr * channels;
    const float *vx = v + (size_t)xi * p.ldt;
    float *mx = m + (size_t)xi * p.ldt;
    for (int tp = 0; tp < tilePanels; tp++) {
      // Products past the last tile are never read, so a short last panel may skip them.
      const int columns = tiles - tp * nr < nr ? tiles - tp * nr : nr;
      for (int rp = 0; rp < rowPanels; rp++) {
        const int rows = outChannels - rp * mr < mr ? outChannels - rp * mr : mr;
        kernel(
            channels, u + (size_t)rp * mr * channels, vx + (size_t)tp * nr, p.block,
            mx + (size_t)rp * mr * p.block + (size_t)tp * nr, p.block, rows, columns, 0);
      }
    }
  }
  for (int n = 0; n < images; n++) {
    transformOutput(&p, m, n, y + (size_t)n * outChannels * p.outHeight * p.outWidth, bias);
  }
}

// MARK: Weight gradient
//
// With Z = A dY Aᵀ the 4×4 transform of a 2×2 tile of the output gradient, the forward formula
// gives dU_ξ[o][c] = Σ_tiles Z_ξ[o][t] V_ξ[c][t] and dg = Gᵀ dU G. Z is laid out like M in the
// forward pass (Z[O][ξ][ldt]). For each ξ both factors are copied into the micro-kernel's panels
// with the tiles as the depth (V in 6-channel panels, Z in panels as wide as the micro-kernel's)
// and multiplied into dUᵀ_ξ [C][O], so that the forward pass's micro-kernel does the work.

/// Floats of the two panel copies for one ξ.
static size_t panelCount(const Plan *p, int depth) {
  // Channel panels of either micro-kernel's rows: 18 rows of 6 hold 16 channels, 16 of 8 hold 17.
  const int narrow = roundUp(p->channels, MR), wide = roundUp(p->channels, MR_WIDE);
  return (size_t)depth * (size_t)((narrow > wide ? narrow : wide) + roundUp(p->outChannels, NR_WIDE))
         + LANES;
}

size_t diffeqnet_winograd_weight_gradient_count(int outChannels, int inChannels) {
  return (size_t)16 * (size_t)outChannels * (size_t)inChannels;
}

size_t diffeqnet_winograd_weight_scratch_count(
    int images, int channels, int height, int width, int outChannels, int pad) {
  const Plan p = makePlan(images, channels, height, width, outChannels, pad);
  // The forward pass's V, M (here Z) and padded plane, and the panels.
  return diffeqnet_winograd_scratch_count(images, channels, height, width, outChannels, pad)
         + panelCount(&p, roundUp(images * p.tilesPerImage, LANES));
}

/// Z[o][ξ][image·T + tile] = (A dY Aᵀ)[ξ] for every tile of one image, 8 tiles at a time; output
/// positions past the map's edge count as zero. `padded` holds padCount floats, zero outside the
/// interiors this function writes (planes of padRows − 2 rows of 2·TXr, TXr: TX rounded up to 8).
__attribute__((target("avx2,fma"))) static void transformGradient(
    const Plan *p, const float *dy, int image, float *z, float *padded) {
  const size_t plane = (size_t)p->ldt;
  const int stride = 2 * roundUp(p->tileColumns, LANES);
  const __m256 zero = _mm256_setzero_ps();
  const __m256i packing = pairedPacking(p->tileColumns);
  for (int o = 0; o < p->outChannels; o++) {  // all copied first, as in transformInput
    copyPlane(dy + (size_t)o * p->outHeight * p->outWidth, p->outHeight, p->outWidth,
              padded + (size_t)o * p->padPlane, stride);
  }
  for (int o = 0; o < p->outChannels; o++) {
    const float *po = padded + (size_t)o * p->padPlane;
    float *zo = z + (size_t)o * p->block + (size_t)image * p->tilesPerImage;
    for (int ty = 0; ty < p->tileRows; ty += 1 + p->pairRows) {
      for (int tx = 0; tx < p->tileColumns; tx += LANES) {
        __m256 d[2][2];
        for (int a = 0; a < 2; a++) {
          const float *row = po + (size_t)(2 * ty + a) * stride + 2 * tx;
          deinterleave(row, p->pairRows ? row + 2 * stride : row + 8, &d[a][0], &d[a][1]);
          if (p->pairRows) {
            d[a][0] = _mm256_permutevar8x32_ps(d[a][0], packing);
            d[a][1] = _mm256_permutevar8x32_ps(d[a][1], packing);
          }
        }
        __m256 s[4][2];  // A dY
        for (int b = 0; b < 2; b++) {
          s[0][b] = d[0][b];
          s[1][b] = _mm256_add_ps(d[0][b], d[1][b]);
          s[2][b] = _mm256_sub_ps(d[0][b], d[1][b]);
          s[3][b] = _mm256_sub_ps(zero, d[1][b]);
        }
        float *out = zo + ty * p->tileColumns + tx;
        for (int i = 0; i < 4; i++) {  // (A dY) Aᵀ
          _mm256_storeu_ps(out + (size_t)(4 * i + 0) * plane, s[i][0]);
          _mm256_storeu_ps(out + (size_t)(4 * i + 1) * plane, _mm256_add_ps(s[i][0], s[i][1]));
          _mm256_storeu_ps(out + (size_t)(4 * i + 2) * plane, _mm256_sub_ps(s[i][0], s[i][1]));
          _mm256_storeu_ps(out + (size_t)(4 * i + 3) * plane, _mm256_sub_ps(zero, s[i][1]));
        }
      }
    }
  }
}

/// Transposes the 8×8 block r[i][j] in place (r[i] becomes the former column i).
__attribute__((target("avx2,fma"))) static inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

/// panel[r / width][k][r % width] = rows[r][k] for `count` rows (stride `block`) of `depth`
/// floats (a multiple of 8), rows past `count` zero: the tiles become the micro-kernel's depth.
/// `width` is 6, 8, 16 or 32; 8×8 blocks are transposed in registers, and with width 6 each 8-float
/// store runs 2 floats into the next k (or, at the very end, into 2 floats of slack), which
/// the next store overwrites.
__attribute__((target("avx2,fma"))) static void packPanels(
    const float *rows, size_t block, int count, int width, int depth, float *panel) {
  const int panels = roundUp(count, width) / width;
  for (int pnl = 0; pnl < panels; pnl++) {
    float *out = panel + (size_t)pnl * depth * width;
    for (int half = 0; half < width; half += LANES) {
      const float *in[LANES];
      for (int r = 0; r < LANES; r++) {
        const int row = pnl * width + half + r;
        in[r] = half + r < width && row < count ? rows + (size_t)row * block : NULL;
      }
      for (int k = 0; k < depth; k += LANES) {
        __m256 b[LANES];
        for (int r = 0; r < LANES; r++) {
          b[r] = in[r] ? _mm256_loadu_ps(in[r] + k) : _mm256_setzero_ps();
        }
        transpose8(b);
        for (int q = 0; q < LANES; q++) {
          _mm256_storeu_ps(out + (size_t)(k + q) * width + half, b[q]);
        }
      }
    }
  }
}

__attribute__((target("avx2,fma"))) void diffeqnet_winograd_weight_gradient(
    const float *x, const float *dy, int images, int channels, int height, int width,
    int outChannels, int pad, float *transformedGradient, int accumulate, int wide,
    float *scratch) {
  const Plan p = makePlan(images, channels, height, width, outChannels, pad);
  float *v = scratch;
  float *z = v + p.block * channels;
  float *padded = z + p.block * outChannels;
  const int tiles = images * p.tilesPerImage;
  const int depth = roundUp(tiles, LANES);
  int nr;
  MicroKernel *kernel = selectMicroKernel(wide, &nr);
  float *vPanels = padded + p.padCount;
  const int mr = microRows(wide);
  float *zPanels = vPanels + (size_t)depth * roundUp(channels, mr);

  memset(padded, 0, p.padCount * sizeof(float));
  for (int n = 0; n < images; n++) {
    transformInput(&p, x + (size_t)n * channels * height * width, n, v, padded);
  }
  memset(padded, 0, p.padCount * sizeof(float));
  for (int n = 0; n < images; n++) {
    transformGradient(&p, dy + (size_t)n * outChannels * p.outHeight * p.outWidth, n, z, padded);
  }
  // Both factors' columns past the last tile are zero, so they add nothing to the products.
  for (int row = 0; row < 16 * (channels + outChannels); row++) {
    float *tail = v + (size_t)(row / 16) * p.block + (size_t)(row % 16) * p.ldt + tiles;
    memset(tail, 0, (size_t)(depth - tiles) * sizeof(float));
  }
  for (int xi = 0; xi < 16; xi++) {
    packPanels(v + (size_t)xi * p.ldt, p.block, channels, mr, depth, vPanels);
    packPanels(z + (size_t)xi * p.ldt, p.block, outChannels, nr, depth, zPanels);
    float *du = transformedGradient + (size_t)xi * channels * outChannels;  // dUᵀ_ξ [C][O]
    for (int op = 0; op < outChannels; op += nr) {
      const int columns = outChannels - op < nr ? outChannels - op : nr;
      for (int cp = 0; cp < channels; cp += mr) {
        const int rows = channels - cp < mr ? channels - cp : mr;
        kernel(
            depth, vPanels + (size_t)cp * depth, zPanels + (size_t)op * depth, nr,
            du + (size_t)cp * outChannels + op, (size_t)outChannels, rows, columns, accumulate);
      }
    }
  }
}

void diffeqnet_winograd_finish_weight_gradient(
    const float *transformedGradients, int count, int outChannels, int inChannels, float *dw,
    int firstOut, int outCount) {
  const size_t size = diffeqnet_winograd_weight_gradient_count(outChannels, inChannels);
  const size_t pairs = (size_t)outChannels * inChannels;
  for (int o = firstOut; o < firstOut + outCount; o++) {
    for (int c = 0; c < inChannels; c++) {
      float u[4][4];
      for (int xi = 0; xi < 16; xi++) {
        float s = 0;
        for (int k = 0; k < count; k++) {
          s += transformedGradients[k * size + xi * pairs + (size_t)c * outChannels + o];
        }
        u[xi / 4][xi % 4] = s;
      }
      float t[3][4];  // Gᵀ dU
      for (int q = 0; q < 4; q++) {
        t[0][q] = u[0][q] + 0.5f * (u[1][q] + u[2][q]);
        t[1][q] = 0.5f * (u[1][q] - u[2][q]);
        t[2][q] = 0.5f * (u[1][q] + u[2][q]) + u[3][q];
      }
      float *g = dw + ((size_t)o * inChannels + c) * 9;
      for (int i = 0; i < 3; i++) {  // (Gᵀ dU) G
        g[i * 3 + 0] = t[i][0] + 0.5f * (t[i][1] + t[i][2]);
        g[i * 3 + 1] = 0.5f * (t[i][1] - t[i][2]);
        g[i * 3 + 2] = 0.5f * (t[i][1] + t[i][2]) + t[i][3];
      }
    }
  }
}

#endif  // defined(__x86_64__)
