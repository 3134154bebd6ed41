// Winograd F(2×2, 3×3) transforms with AVX2 (see Winograd.c for the algorithm and the layout of
// V, M and Z), 8 tiles at a time: the even and odd pixels of a row are split by shuffles, and a
// map at most 4 tiles wide puts two tile rows in one group of 8 lanes.

#include "CSIMDSupport.h"
#include "WinogradPlan.h"

#if defined(__x86_64__)

#include <immintrin.h>

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

/// `winogradF2Input`, 8 tiles (one tile row, or two when they are at most 4 tiles wide) at a
/// time. A group of 8 that runs past the row's end spills into the next row's (or image's)
/// first slots, which are written later; the loops go in increasing tile order so that the
/// correct value lands last.
__attribute__((target("avx2,fma"))) void winogradF2Input(
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
/// `winogradF2Input`.
__attribute__((target("avx2,fma"))) void winogradF2Output(
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

/// Z[o][ξ][image·T + tile] = (A dY Aᵀ)[ξ] for every tile of one image, 8 tiles at a time; output
/// positions past the map's edge count as zero. `padded` holds padCount floats, zero outside the
/// interiors this function writes (planes of padRows − 2 rows of 2·TXr, TXr: TX rounded up to 8).
__attribute__((target("avx2,fma"))) void winogradF2Gradient(
    const Plan *p, const float *dy, int image, float *z, float *padded) {
  const size_t plane = (size_t)p->ldt;
  const int stride = 2 * roundUp(p->tileColumns, LANES);
  const __m256 zero = _mm256_setzero_ps();
  const __m256i packing = pairedPacking(p->tileColumns);
  for (int o = 0; o < p->outChannels; o++) {  // all copied first, as in winogradF2Input
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

#endif  // defined(__x86_64__)
