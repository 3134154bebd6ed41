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
  int workStride;             // a row of the AVX-512 transforms' work array: T rounded up, + 16
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
  // The AVX-512 transforms use the same room for their two work arrays of 16 rows instead.
  p.workStride = roundUp(p.tilesPerImage, 16) + 16;
  const size_t work = (size_t)2 * 16 * p.workStride;
  p.padCount = ((p.padPlane * planes > work ? p.padPlane * planes : work) + 15) / 16 * 16;
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

// MARK: AVX-512 transforms
//
// With 16 lanes the transforms run in two passes through a small work array W, so that no lane
// has to be gathered across tile rows, whatever the map's width: the first pass transforms each
// pixel row along its width, 16 tiles of that row at a time (the even and the odd pixels of 32
// columns gathered by one permute each), and stores the result for each tile row the pixel row
// belongs to; the second combines rows of W down the height, 16 consecutive tiles at a time,
// which lie side by side in W (tile t = ty·TX + tx at W[row][t]) and in V, M and Z. Padding
// needs no zero-bordered copy: masked loads read zeros outside the map and touch no memory there.

enum { WIDE = 16 };

/// The lanes l < count (count clamped to 0 ... 16).
static inline __mmask16 prefixMask16(int count) {
  return count <= 0 ? 0 : count >= WIDE ? 0xFFFF : (__mmask16)((1u << count) - 1);
}

/// The lanes l of a 16-float segment whose columns first + l lie in 0 ..< width.
static inline __mmask16 segmentMask(int first, int width) {
  return prefixMask16(width - first) & (__mmask16)~prefixMask16(-first);
}

/// t[0 ..< 4] to w, w + ws, w + 2·ws, w + 3·ws, the lanes in `lanes` only.
__attribute__((target("avx512f,avx2,fma"))) static inline void storeFour(
    float *w, size_t ws, __mmask16 lanes, const __m512 t[4]) {
  for (int j = 0; j < 4; j++) _mm512_mask_storeu_ps(w + (size_t)j * ws, lanes, t[j]);
}

/// Indices for `_mm512_permutex2var_ps(a, ·, b)`: the even or odd floats of a‖b, and the
/// interleaving [a0 b0 a1 b1 …] of its low or high halves.
__attribute__((target("avx512f,avx2,fma"))) static inline __m512i evenIndices(int odd) {
  return _mm512_add_epi32(
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
      _mm512_set1_epi32(odd));
}

__attribute__((target("avx512f,avx2,fma"))) static inline __m512i interleaveIndices(int high) {
  return _mm512_add_epi32(
      _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23),
      _mm512_set1_epi32(high ? 8 : 0));
}

/// W[4i + j] = (d B)[j] of pixel row i of every tile of one channel `xc`, for `transformInput`.
/// The masks depend on the column group only; a row outside the image loads with none.
__attribute__((target("avx512f,avx2,fma"))) static inline void inputRowPass(
    const Plan *p, const float *xc, float *w) {
  const size_t ws = (size_t)p->workStride;
  const int TX = p->tileColumns, TY = p->tileRows;
  const __m512i even = evenIndices(0), odd = evenIndices(1);
  for (int g = 0; g < TX; g += WIDE) {
    const int first = 2 * g - p->pad;  // the image column under padded column 2g
    const __mmask16 ma = segmentMask(first, p->width), mb = segmentMask(first + 16, p->width);
    const __mmask16 ma2 = segmentMask(first + 2, p->width);
    const __mmask16 mb2 = segmentMask(first + 18, p->width);
    const __mmask16 lanes = prefixMask16(TX - g);
    for (int pr = 0; pr < 2 * TY + 2; pr++) {  // padded row pr is row pr − 2ty of tile row ty
      const int row = pr - p->pad;
      const __mmask16 inside = row >= 0 && row < p->height ? 0xFFFF : 0;
      const float *src = xc + (size_t)(inside ? row : 0) * p->width + first;
      const __m512 a = _mm512_maskz_loadu_ps(ma & inside, src);
      const __m512 b = _mm512_maskz_loadu_ps(mb & inside, src + 16);
      const __m512 a2 = _mm512_maskz_loadu_ps(ma2 & inside, src + 2);
      const __m512 b2 = _mm512_maskz_loadu_ps(mb2 & inside, src + 18);
      const __m512 c0 = _mm512_permutex2var_ps(a, even, b);  // column 2tx of each tile
      const __m512 c1 = _mm512_permutex2var_ps(a, odd, b);
      const __m512 c2 = _mm512_permutex2var_ps(a2, even, b2);
      const __m512 c3 = _mm512_permutex2var_ps(a2, odd, b2);
      const __m512 t[4] = {
          _mm512_sub_ps(c0, c2), _mm512_add_ps(c1, c2), _mm512_sub_ps(c2, c1),
          _mm512_sub_ps(c1, c3)};
      const int ty = pr / 2, i = pr % 2;
      float *dst = w + (size_t)ty * TX + g;
      if (ty < TY) storeFour(dst + (size_t)(4 * i) * ws, ws, lanes, t);
      if (ty > 0) storeFour(dst - TX + (size_t)(4 * i + 8) * ws, ws, lanes, t);
    }
  }
}

/// V_c[4i + j] = (Bᵀ (d B))[i][j] from W, 16 tiles at a time. Lanes past the image's last tile
/// spill into the next image's first slots (or the row's slack), which are written later.
__attribute__((target("avx512f,avx2,fma"))) static inline void inputColumnPass(
    const Plan *p, const float *w, float *vc) {
  const size_t ws = (size_t)p->workStride, plane = (size_t)p->ldt;
  for (int t = 0; t < p->tilesPerImage; t += WIDE) {
    for (int j = 0; j < 4; j++) {
      const __m512 d0 = _mm512_loadu_ps(w + (size_t)(0 + j) * ws + t);
      const __m512 d1 = _mm512_loadu_ps(w + (size_t)(4 + j) * ws + t);
      const __m512 d2 = _mm512_loadu_ps(w + (size_t)(8 + j) * ws + t);
      const __m512 d3 = _mm512_loadu_ps(w + (size_t)(12 + j) * ws + t);
      _mm512_storeu_ps(vc + (size_t)(0 + j) * plane + t, _mm512_sub_ps(d0, d2));
      _mm512_storeu_ps(vc + (size_t)(4 + j) * plane + t, _mm512_add_ps(d1, d2));
      _mm512_storeu_ps(vc + (size_t)(8 + j) * plane + t, _mm512_sub_ps(d2, d1));
      _mm512_storeu_ps(vc + (size_t)(12 + j) * plane + t, _mm512_sub_ps(d1, d3));
    }
  }
}

/// `transformInput` with 16 lanes, `work` holding two W arrays. The second pass of channel c
/// runs after the first of channel c + 1: its 16-float loads span several of the first pass's
/// masked stores, which cannot be forwarded, so they must have reached the cache.
__attribute__((target("avx512f,avx2,fma"))) static void transformInputWide(
    const Plan *p, const float *x, int image, float *v, float *work) {
  const size_t plane = (size_t)p->height * p->width, half = (size_t)16 * p->workStride;
  for (int c = 0; c <= p->channels; c++) {
    if (c < p->channels) inputRowPass(p, x + (size_t)c * plane, work + (size_t)(c % 2) * half);
    if (c > 0) {
      inputColumnPass(
          p, work + (size_t)((c - 1) % 2) * half,
          v + (size_t)(c - 1) * p->block + (size_t)image * p->tilesPerImage);
    }
  }
}

/// W[4a + j] = (Aᵀ M)[a][j] of one output channel's products `mo`, 16 tiles at a time, for
/// `transformOutput`; lanes past the last tile read finite or unused products.
__attribute__((target("avx512f,avx2,fma"))) static inline void outputColumnPass(
    const Plan *p, const float *mo, float *w) {
  const size_t ws = (size_t)p->workStride, plane = (size_t)p->ldt;
  for (int t = 0; t < p->tilesPerImage; t += WIDE) {
    for (int j = 0; j < 4; j++) {
      const __m512 m0 = _mm512_loadu_ps(mo + (size_t)(0 + j) * plane + t);
      const __m512 m1 = _mm512_loadu_ps(mo + (size_t)(4 + j) * plane + t);
      const __m512 m2 = _mm512_loadu_ps(mo + (size_t)(8 + j) * plane + t);
      const __m512 m3 = _mm512_loadu_ps(mo + (size_t)(12 + j) * plane + t);
      _mm512_storeu_ps(w + (size_t)j * ws + t, _mm512_add_ps(_mm512_add_ps(m0, m1), m2));
      _mm512_storeu_ps(w + (size_t)(4 + j) * ws + t, _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3));
    }
  }
}

/// Output row oy of channel `yo` = (Aᵀ M) A + shift from W, the two columns of each tile
/// interleaved by permutes.
__attribute__((target("avx512f,avx2,fma"))) static inline void outputRowPass(
    const Plan *p, const float *w, float *yo, float shift) {
  const size_t ws = (size_t)p->workStride;
  const int TX = p->tileColumns;
  const __m512i low = interleaveIndices(0), high = interleaveIndices(1);
  const __m512 bias = _mm512_set1_ps(shift);
  for (int oy = 0; oy < p->outHeight; oy++) {
    const float *r = w + (size_t)(oy % 2) * 4 * ws + (size_t)(oy / 2) * TX;
    float *dst = yo + (size_t)oy * p->outWidth;
    for (int g = 0; g < TX; g += WIDE) {  // lanes past the row's tiles are not stored
      const __m512 r0 = _mm512_loadu_ps(r + g), r1 = _mm512_loadu_ps(r + ws + g);
      const __m512 r2 = _mm512_loadu_ps(r + 2 * ws + g), r3 = _mm512_loadu_ps(r + 3 * ws + g);
      const __m512 left = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r0, r1), r2), bias);
      const __m512 right = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(r1, r2), r3), bias);
      const int columns = p->outWidth - 2 * g;
      _mm512_mask_storeu_ps(
          dst + 2 * g, prefixMask16(columns), _mm512_permutex2var_ps(left, low, right));
      _mm512_mask_storeu_ps(
          dst + 2 * g + WIDE, prefixMask16(columns - WIDE),
          _mm512_permutex2var_ps(left, high, right));
    }
  }
}

/// `transformOutput` with 16 lanes, `work` holding two W arrays, pipelined over the channels as
/// `transformInputWide` is.
__attribute__((target("avx512f,avx2,fma"))) static void transformOutputWide(
    const Plan *p, const float *m, int image, float *y, const float *bias, float *work) {
  const size_t plane = (size_t)p->outHeight * p->outWidth, half = (size_t)16 * p->workStride;
  for (int o = 0; o <= p->outChannels; o++) {
    if (o < p->outChannels) {
      outputColumnPass(
          p, m + (size_t)o * p->block + (size_t)image * p->tilesPerImage,
          work + (size_t)(o % 2) * half);
    }
    if (o > 0) {
      outputRowPass(
          p, work + (size_t)((o - 1) % 2) * half, y + (size_t)(o - 1) * plane,
          bias ? bias[o - 1] : 0.0f);
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

  if (wide) {
    for (int n = 0; n < images; n++) {
      transformInputWide(&p, x + (size_t)n * channels * height * width, n, v, padded);
    }
  } else {
    memset(padded, 0, p.padCount * sizeof(float));
    for (int n = 0; n < images; n++) {
      transformInput(&p, x + (size_t)n * channels * height * width, n, v, padded);
    }
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
    float *yn = y + (size_t)n * outChannels * p.outHeight * p.outWidth;
    if (wide) {
      transformOutputWide(&p, m, n, yn, bias, padded);
    } else {
      transformOutput(&p, m, n, yn, bias);
    }
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

/// W[4a + j] = (dY Aᵀ)[a][j] of every output row of one channel `dyo` (a: the row within its
/// tile), for `transformGradient`; rows and columns past the map read as zeros.
__attribute__((target("avx512f,avx2,fma"))) static inline void gradientRowPass(
    const Plan *p, const float *dyo, float *w) {
  const size_t ws = (size_t)p->workStride;
  const int TX = p->tileColumns;
  const __m512i even = evenIndices(0), odd = evenIndices(1);
  for (int g = 0; g < TX; g += WIDE) {
    const __mmask16 ma = segmentMask(2 * g, p->outWidth);
    const __mmask16 mb = segmentMask(2 * g + 16, p->outWidth);
    const __mmask16 lanes = prefixMask16(TX - g);
    for (int oy = 0; oy < 2 * p->tileRows; oy++) {
      const __mmask16 inside = oy < p->outHeight ? 0xFFFF : 0;
      const float *src = dyo + (size_t)(inside ? oy : 0) * p->outWidth + 2 * g;
      const __m512 a = _mm512_maskz_loadu_ps(ma & inside, src);
      const __m512 b = _mm512_maskz_loadu_ps(mb & inside, src + 16);
      const __m512 d0 = _mm512_permutex2var_ps(a, even, b);
      const __m512 d1 = _mm512_permutex2var_ps(a, odd, b);
      const __m512 t[4] = {
          d0, _mm512_add_ps(d0, d1), _mm512_sub_ps(d0, d1),
          _mm512_sub_ps(_mm512_setzero_ps(), d1)};
      storeFour(w + (size_t)(oy % 2) * 4 * ws + (size_t)(oy / 2) * TX + g, ws, lanes, t);
    }
  }
}

/// Z_o[4i + j] = (A (dY Aᵀ))[i][j] from W, 16 tiles at a time, spilling as `inputColumnPass`.
__attribute__((target("avx512f,avx2,fma"))) static inline void gradientColumnPass(
    const Plan *p, const float *w, float *zo) {
  const size_t ws = (size_t)p->workStride, plane = (size_t)p->ldt;
  const __m512 zero = _mm512_setzero_ps();
  for (int t = 0; t < p->tilesPerImage; t += WIDE) {
    for (int j = 0; j < 4; j++) {
      const __m512 s0 = _mm512_loadu_ps(w + (size_t)j * ws + t);
      const __m512 s1 = _mm512_loadu_ps(w + (size_t)(4 + j) * ws + t);
      _mm512_storeu_ps(zo + (size_t)(0 + j) * plane + t, s0);
      _mm512_storeu_ps(zo + (size_t)(4 + j) * plane + t, _mm512_add_ps(s0, s1));
      _mm512_storeu_ps(zo + (size_t)(8 + j) * plane + t, _mm512_sub_ps(s0, s1));
      _mm512_storeu_ps(zo + (size_t)(12 + j) * plane + t, _mm512_sub_ps(zero, s1));
    }
  }
}

/// `transformGradient` with 16 lanes, `work` holding two W arrays, pipelined over the channels
/// as `transformInputWide` is.
__attribute__((target("avx512f,avx2,fma"))) static void transformGradientWide(
    const Plan *p, const float *dy, int image, float *z, float *work) {
  const size_t plane = (size_t)p->outHeight * p->outWidth, half = (size_t)16 * p->workStride;
  for (int o = 0; o <= p->outChannels; o++) {
    if (o < p->outChannels) gradientRowPass(p, dy + (size_t)o * plane, work + (size_t)(o % 2) * half);
    if (o > 0) {
      gradientColumnPass(
          p, work + (size_t)((o - 1) % 2) * half,
          z + (size_t)(o - 1) * p->block + (size_t)image * p->tilesPerImage);
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

  for (int n = 0; n < images; n++) {
    const float *xn = x + (size_t)n * channels * height * width;
    const float *dyn = dy + (size_t)n * outChannels * p.outHeight * p.outWidth;
    if (wide) {
      transformInputWide(&p, xn, n, v, padded);
      transformGradientWide(&p, dyn, n, z, padded);
    } else {
      if (n == 0) memset(padded, 0, p.padCount * sizeof(float));
      transformInput(&p, xn, n, v, padded);
    }
  }
  if (!wide) {
    memset(padded, 0, p.padCount * sizeof(float));
    for (int n = 0; n < images; n++) {
      transformGradient(&p, dy + (size_t)n * outChannels * p.outHeight * p.outWidth, n, z, padded);
    }
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
