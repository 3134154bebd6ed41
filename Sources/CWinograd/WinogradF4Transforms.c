// Winograd F(4×4, 3×3) transforms with AVX-512 (see Winograd.c for the algorithm and
// WinogradPlan.h for the layout of V, M and Z), with the interpolation points 0, ±1, ±2 and ∞:
//
//   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1],
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1].
//
// The 16 lanes of a vector hold one value of 16 images, so every lane does useful work whatever
// the map's size, and a tile's α² values for the 16 images are 16 contiguous floats of V, M or
// Z. A pixel row of the 16 images becomes one vector per column by 16 × 16 transposes in
// registers (`transpose16`), kept in a small ring of row slots while the tiles over them are
// transformed; an output row goes back the same way. Images past `count` are zero lanes, and
// zero padding is masked loads: no lane reads memory outside the maps.

#include "WinogradPlan.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define AVX512 __attribute__((target("avx512f,avx2,fma")))

enum { WIDE = F4_IMAGES, SLOTS = F4_SLOTS };

/// The lanes l < count (count clamped to 0 ... 16).
static inline __mmask16 prefixMask16(int count) {
  return count <= 0 ? 0 : count >= WIDE ? 0xFFFF : (__mmask16)((1u << count) - 1);
}

/// Transposes the 16 × 16 block r[i][j] in place (r[j] becomes the former column j).
AVX512 static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit lane: r[i][4l + 0, 1] and r[i + 1]'s, …
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // r[i + k] lane l: rows i ..< i + 4 of column 4l + k
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] =
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  for (int k = 0; k < 4; k++) {  // gather lane l of the four row groups into column 4l + k
    const __m512 a = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
    const __m512 b = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
    const __m512 c = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
    const __m512 d = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
    t[k] = _mm512_shuffle_f32x4(a, c, 0x88);
    t[8 + k] = _mm512_shuffle_f32x4(a, c, 0xDD);
    t[4 + k] = _mm512_shuffle_f32x4(b, d, 0x88);
    t[12 + k] = _mm512_shuffle_f32x4(b, d, 0xDD);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

/// slot[16·k + l] = row[l][k] for k < 16·⌈width / 16⌉: the pixel row `row` of `count` images
/// (`imageSize` floats apart) as one 16-image vector per column, zero past `width` and for
/// images past `count`.
AVX512 static inline void transposeRow(
    const float *row, size_t imageSize, int count, int width, float *slot) {
  for (int s = 0; 16 * s < width; s++) {
    const __mmask16 columns = prefixMask16(width - 16 * s);
    __m512 b[16];
    for (int l = 0; l < WIDE; l++) {
      b[l] = l < count ? _mm512_maskz_loadu_ps(columns, row + (size_t)l * imageSize + 16 * s)
                       : _mm512_setzero_ps();
    }
    transpose16(b);
    for (int k = 0; k < WIDE; k++) _mm512_storeu_ps(slot + (size_t)(16 * s + k) * WIDE, b[k]);
  }
}

/// r = Bᵀ d.
AVX512 static inline void transformB(const __m512 d[6], __m512 r[6]) {
  const __m512 two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), five = _mm512_set1_ps(5);
  const __m512 t1 = _mm512_fnmadd_ps(four, d[2], d[4]);  // d4 − 4 d2
  const __m512 t2 = _mm512_fnmadd_ps(four, d[1], d[3]);  // d3 − 4 d1
  const __m512 t3 = _mm512_sub_ps(d[4], d[2]);
  const __m512 t4 = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
  r[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
  r[1] = _mm512_add_ps(t1, t2);
  r[2] = _mm512_sub_ps(t1, t2);
  r[3] = _mm512_add_ps(t3, t4);
  r[4] = _mm512_sub_ps(t3, t4);
  r[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/// r = Aᵀ m.
AVX512 static inline void transformA(const __m512 m[6], __m512 r[4]) {
  const __m512 two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), eight = _mm512_set1_ps(8);
  const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
  const __m512 c = _mm512_add_ps(m[3], m[4]), d = _mm512_sub_ps(m[3], m[4]);
  r[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), c);
  r[1] = _mm512_fmadd_ps(two, d, b);
  r[2] = _mm512_fmadd_ps(four, c, a);
  r[3] = _mm512_add_ps(_mm512_fmadd_ps(eight, d, b), m[5]);
}

/// r = A d (A = (Aᵀ)ᵀ, 6 × 4): the gradient's transform.
AVX512 static inline void transformATransposed(const __m512 d[4], __m512 r[6]) {
  const __m512 four = _mm512_set1_ps(4), eight = _mm512_set1_ps(8);
  const __m512 even = _mm512_add_ps(d[0], d[2]), odd = _mm512_add_ps(d[1], d[3]);
  const __m512 even4 = _mm512_fmadd_ps(four, d[2], d[0]);
  const __m512 odd8 = _mm512_fmadd_ps(eight, d[3], _mm512_add_ps(d[1], d[1]));
  r[0] = d[0];
  r[1] = _mm512_add_ps(even, odd);
  r[2] = _mm512_sub_ps(even, odd);
  r[3] = _mm512_add_ps(even4, odd8);
  r[4] = _mm512_sub_ps(even4, odd8);
  r[5] = d[3];
}

/// The floats of one row slot: a 16-image vector per column.
static inline size_t slotSize(const Plan *p) { return (size_t)p->slotColumns * WIDE; }

// MARK: Input

AVX512 void winogradF4Input(
    const Plan *p, const float *x, int count, int firstRow, int rows, float *v, float *work) {
  const size_t plane = (size_t)p->height * p->width, imageSize = (size_t)p->channels * plane;
  const size_t slot = slotSize(p), ldt = (size_t)p->ldt;
  const int TX = p->tileColumns;
  // Padded pixel row pr lives in slot pr % 8, padded column pc at vector pc; the padding columns
  // stay zero from here on, since the rows are written at pad ..< pad + width only.
  memset(work, 0, SLOTS * slot * sizeof(float));
  for (int c = 0; c < p->channels; c++) {
    const float *xc = x + (size_t)c * plane;
    float *vc = v + (size_t)c * p->block;
    for (int ty = firstRow; ty < firstRow + rows; ty++) {
      // Tile row ty reads padded rows 4ty ..< 4ty + 6, the first two shared with the row above.
      for (int pr = ty == firstRow ? 4 * ty : 4 * ty + 2; pr < 4 * ty + 6; pr++) {
        float *s = work + (size_t)(pr % SLOTS) * slot + (size_t)p->pad * WIDE;
        const int r = pr - p->pad;
        if (r >= 0 && r < p->height) {
          transposeRow(xc + (size_t)r * p->width, imageSize, count, p->width, s);
        } else {
          memset(s, 0, (size_t)roundUp(p->width, WIDE) * WIDE * sizeof(float));
        }
      }
      float *dst = vc + (size_t)(ty - firstRow) * TX * WIDE;
      for (int tx = 0; tx < TX; tx++) {
        __m512 t[6][6];  // t[i] = (d B)[i] = Bᵀ applied to row i of the tile
        for (int i = 0; i < 6; i++) {
          const float *row = work + (size_t)((4 * ty + i) % SLOTS) * slot + (size_t)(4 * tx) * WIDE;
          __m512 d[6];
          for (int k = 0; k < 6; k++) d[k] = _mm512_loadu_ps(row + k * WIDE);
          transformB(d, t[i]);
        }
        for (int j = 0; j < 6; j++) {
          __m512 d[6], r[6];
          for (int i = 0; i < 6; i++) d[i] = t[i][j];
          transformB(d, r);
          for (int i = 0; i < 6; i++) {
            _mm512_storeu_ps(dst + (size_t)(6 * i + j) * ldt + (size_t)tx * WIDE, r[i]);
          }
        }
      }
    }
  }
}

// MARK: Output

// Without no_builtin, clang turns the 16 loads before each transpose into a call to memcpy
// into a stack array.
AVX512 __attribute__((no_builtin("memcpy"))) void winogradF4Output(
    const Plan *p, const float *m, int count, int firstRow, int rows, float *y,
    const float *bias, float *work) {
  const size_t plane = (size_t)p->outHeight * p->outWidth, imageSize = (size_t)p->outChannels * plane;
  const size_t slot = slotSize(p), ldt = (size_t)p->ldt;
  const int TX = p->tileColumns;
  for (int o = 0; o < p->outChannels; o++) {
    const __m512 shift = _mm512_set1_ps(bias ? bias[o] : 0.0f);
    const float *mo = m + (size_t)o * p->block;
    float *yo = y + (size_t)o * plane;
    for (int ty = firstRow; ty < firstRow + rows; ty++) {
      // The tile row's 4 output rows, a 16-image vector per column, in slots 0 ..< 4; columns
      // past the row's tiles hold whatever was there and are never stored.
      const float *src = mo + (size_t)(ty - firstRow) * TX * WIDE;
      for (int tx = 0; tx < TX; tx++) {
        __m512 s[6][4];  // s[i] = row i of M A
        for (int i = 0; i < 6; i++) {
          __m512 mi[6];
          for (int j = 0; j < 6; j++) {
            mi[j] = _mm512_loadu_ps(src + (size_t)(6 * i + j) * ldt + (size_t)tx * WIDE);
          }
          transformA(mi, s[i]);
        }
        for (int b = 0; b < 4; b++) {
          __m512 d[6], r[4];
          for (int i = 0; i < 6; i++) d[i] = s[i][b];
          transformA(d, r);
          for (int a = 0; a < 4; a++) {
            _mm512_storeu_ps(
                work + (size_t)a * slot + (size_t)(4 * tx + b) * WIDE, _mm512_add_ps(r[a], shift));
          }
        }
      }
      for (int a = 0; a < 4 && 4 * ty + a < p->outHeight; a++) {
        float *row = yo + (size_t)(4 * ty + a) * p->outWidth;
        for (int s = 0; 16 * s < p->outWidth; s++) {
          __m512 b[16];
          for (int k = 0; k < WIDE; k++) {
            b[k] = _mm512_loadu_ps(work + (size_t)a * slot + (size_t)(16 * s + k) * WIDE);
          }
          transpose16(b);
          const __mmask16 columns = prefixMask16(p->outWidth - 16 * s);
          for (int l = 0; l < count; l++) {
            _mm512_mask_storeu_ps(row + (size_t)l * imageSize + 16 * s, columns, b[l]);
          }
        }
      }
    }
  }
}

// MARK: Output gradient

AVX512 void winogradF4Gradient(
    const Plan *p, const float *dy, int count, int firstRow, int rows, float *z, float *work) {
  const size_t plane = (size_t)p->outHeight * p->outWidth, imageSize = (size_t)p->outChannels * plane;
  const size_t slot = slotSize(p), ldt = (size_t)p->ldt;
  const int TX = p->tileColumns;
  for (int o = 0; o < p->outChannels; o++) {
    const float *dyo = dy + (size_t)o * plane;
    float *zo = z + (size_t)o * p->block;
    for (int ty = firstRow; ty < firstRow + rows; ty++) {
      // Output rows 4ty + a in slot a, zero past the map (the tiles cover 4·TX ≤ 16·⌈Wo/16⌉).
      for (int a = 0; a < 4; a++) {
        float *s = work + (size_t)a * slot;
        if (4 * ty + a < p->outHeight) {
          transposeRow(dyo + (size_t)(4 * ty + a) * p->outWidth, imageSize, count, p->outWidth, s);
        } else {
          memset(s, 0, (size_t)roundUp(p->outWidth, WIDE) * WIDE * sizeof(float));
        }
      }
      float *dst = zo + (size_t)(ty - firstRow) * TX * WIDE;
      for (int tx = 0; tx < TX; tx++) {
        __m512 t[4][6];  // t[a] = A applied to row a of the tile
        for (int a = 0; a < 4; a++) {
          const float *row = work + (size_t)a * slot + (size_t)(4 * tx) * WIDE;
          __m512 d[4];
          for (int b = 0; b < 4; b++) d[b] = _mm512_loadu_ps(row + b * WIDE);
          transformATransposed(d, t[a]);
        }
        for (int j = 0; j < 6; j++) {
          __m512 d[4], r[6];
          for (int a = 0; a < 4; a++) d[a] = t[a][j];
          transformATransposed(d, r);
          for (int i = 0; i < 6; i++) {
            _mm512_storeu_ps(dst + (size_t)(6 * i + j) * ldt + (size_t)tx * WIDE, r[i]);
          }
        }
      }
    }
  }
}

#endif  // defined(__x86_64__)
