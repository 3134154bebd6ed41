// Winograd F(4×4, 3×3) transforms with AVX-512 (see Winograd.c for the algorithm and the layout
// of V, M and Z), with the interpolation points 0, ±1, ±2 and ∞:
//
//   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1],
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1].
//
// Each transform runs in two passes through a small work array W, so that no lane has to be
// gathered across tile rows, whatever the map's width. One pass works along the width: 16 tiles
// of one pixel row at a time, the pixels 4·tx + k of 32 columns gathered by one permute (two
// for more than 8 tiles). The other works down the height, on 16 consecutive tiles at a time,
// which lie side by side in W (tile t = ty·TX + tx at W[row][t]) and in V, M and Z. Padding needs
// no zero-bordered copy: masked loads read zeros outside the map and touch no memory there.
//
// The passes of consecutive channels alternate between two work arrays: the second pass of
// channel c runs after the first of channel c + 1, because its 16-float loads span several of
// the first pass's masked stores, which cannot be forwarded and must have reached the cache.

#include "WinogradPlan.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx2,fma")))

enum { WIDE = 16 };

/// The lanes l < count (count clamped to 0 ... 16).
static inline __mmask16 prefixMask16(int count) {
  return count <= 0 ? 0 : count >= WIDE ? 0xFFFF : (__mmask16)((1u << count) - 1);
}

/// The lanes l of a 16-float segment whose columns first + l lie in 0 ..< width.
static inline __mmask16 segmentMask(int first, int width) {
  return prefixMask16(width - first) & (__mmask16)~prefixMask16(-first);
}

/// Lanes l ← float 4l + k of a‖b for l < 8 (the upper 8 lanes repeat the pattern).
AVX512 static inline __m512i strideFour(int k) {
  return _mm512_add_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28),
      _mm512_set1_epi32(k));
}

/// The 16 tiles' pixel 4·tx + k from the four 16-float segments s[0 ..< 4] of 64 columns; the
/// upper 8 tiles only when `upper`.
AVX512 static inline __m512 gatherColumn(const __m512 s[4], __m512i index, int upper) {
  const __m512 low = _mm512_permutex2var_ps(s[0], index, s[1]);
  if (!upper) return low;
  return _mm512_mask_blend_ps(0xFF00, low, _mm512_permutex2var_ps(s[2], index, s[3]));
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

/// The lanes of `lanes` of r[0 ..< count] to w + j·ws.
AVX512 static inline void storeRows(
    float *w, size_t ws, __mmask16 lanes, const __m512 *r, int count) {
  for (int j = 0; j < count; j++) _mm512_mask_storeu_ps(w + (size_t)j * ws, lanes, r[j]);
}

// MARK: Input

/// `inputRowPass` for the group of tiles g ..< g + 16, `upper` (a constant after inlining, so
/// that the segments stay in registers) when it has more than 8.
AVX512 __attribute__((always_inline)) static inline void inputRowGroup(
    const Plan *p, const float *xc, float *w, int g, int upper) {
  const size_t ws = (size_t)p->workStride;
  const int TX = p->tileColumns, rows = 4 * p->tileRows + 2;
  const int first = 4 * g - p->pad;  // the image column under padded column 4g
  __mmask16 mask[2][4];              // segments of 16 columns from `first` and from first + 4
  for (int s = 0; s < 4; s++) {
    mask[0][s] = segmentMask(first + 16 * s, p->width);
    mask[1][s] = segmentMask(first + 4 + 16 * s, p->width);
  }
  const __mmask16 lanes = prefixMask16(TX - g);
  for (int pr = 0; pr < rows; pr++) {
    const int row = pr - p->pad;
    const __mmask16 inside = row >= 0 && row < p->height ? 0xFFFF : 0;
    const float *src = xc + (size_t)(inside ? row : 0) * p->width + first;
    __m512 s[2][4];
    for (int h = 0; h < 2; h++) {
      for (int q = 0; q < (upper ? 4 : 2); q++) {
        s[h][q] = _mm512_maskz_loadu_ps(mask[h][q] & inside, src + 4 * h + 16 * q);
      }
    }
    __m512 d[6], r[6];
    for (int k = 0; k < 4; k++) d[k] = gatherColumn(s[0], strideFour(k), upper);
    d[4] = gatherColumn(s[1], strideFour(0), upper);  // pixels 4·tx + 4 and + 5
    d[5] = gatherColumn(s[1], strideFour(1), upper);
    transformB(d, r);
    storeRows(w + (size_t)(6 * (pr % 4)) * ws + (size_t)(pr / 4) * TX + g, ws, lanes, r, 6);
  }
}

/// W[6q + j][ty'·TX + tx] = (d B)[j] of padded pixel row 4·ty' + q of one channel `xc`.
AVX512 static inline void inputRowPass(const Plan *p, const float *xc, float *w) {
  for (int g = 0; g < p->tileColumns; g += WIDE) {
    if (p->tileColumns - g > 8) {
      inputRowGroup(p, xc, w, g, 1);
    } else {
      inputRowGroup(p, xc, w, g, 0);
    }
  }
}

/// V_c[6i + j] = (Bᵀ (d B))[i][j] from W: rows 4ty + i of tile t = ty·TX + tx are W[6i + j][t]
/// for i < 4 and W[6(i − 4) + j][t + TX] below. Lanes past the image's last tile spill into the
/// next image's first slots (or the row's slack), which are written later.
AVX512 static inline void inputColumnPass(const Plan *p, const float *w, float *vc) {
  const size_t ws = (size_t)p->workStride, plane = (size_t)p->ldt;
  const int TX = p->tileColumns;
  for (int t = 0; t < p->tilesPerImage; t += WIDE) {
    for (int j = 0; j < 6; j++) {
      __m512 d[6], r[6];
      for (int i = 0; i < 4; i++) d[i] = _mm512_loadu_ps(w + (size_t)(6 * i + j) * ws + t);
      d[4] = _mm512_loadu_ps(w + (size_t)j * ws + t + TX);
      d[5] = _mm512_loadu_ps(w + (size_t)(6 + j) * ws + t + TX);
      transformB(d, r);
      for (int i = 0; i < 6; i++) _mm512_storeu_ps(vc + (size_t)(6 * i + j) * plane + t, r[i]);
    }
  }
}

/// A pass from a channel's plane (or its transformed rows) into W, or from W onward.
typedef void Pass(const Plan *p, const float *from, float *to);

/// For each of `count` channels, `rowPass` from its plane of `plane` floats into W, then
/// `columnPass` from W into its α² rows of the chunk's V or Z (`block` apart, this image's
/// tiles), the two passes of consecutive channels interleaved through two W arrays.
AVX512 static void rowsThenColumns(
    const Plan *p, int count, Pass *rowPass, const float *planes, size_t plane,
    Pass *columnPass, float *rows, int image, float *work) {
  const size_t half = (size_t)24 * p->workStride;
  for (int c = 0; c <= count; c++) {
    if (c < count) rowPass(p, planes + (size_t)c * plane, work + (size_t)(c % 2) * half);
    if (c > 0) {
      columnPass(
          p, work + (size_t)((c - 1) % 2) * half,
          rows + (size_t)(c - 1) * p->block + (size_t)image * p->tilesPerImage);
    }
  }
}

AVX512 void winogradF4Input(const Plan *p, const float *x, int image, float *v, float *work) {
  rowsThenColumns(
      p, p->channels, inputRowPass, x, (size_t)p->height * p->width, inputColumnPass, v, image,
      work);
}

// MARK: Output

/// W[6a + j][t] = (Aᵀ M)[a][j] of one output channel's products `mo`; lanes past the last tile
/// read finite or unused products.
AVX512 static inline void outputColumnPass(const Plan *p, const float *mo, float *w) {
  const size_t ws = (size_t)p->workStride, plane = (size_t)p->ldt;
  for (int t = 0; t < p->tilesPerImage; t += WIDE) {
    for (int j = 0; j < 6; j++) {
      __m512 m[6], r[4];
      for (int i = 0; i < 6; i++) m[i] = _mm512_loadu_ps(mo + (size_t)(6 * i + j) * plane + t);
      transformA(m, r);
      for (int a = 0; a < 4; a++) _mm512_storeu_ps(w + (size_t)(6 * a + j) * ws + t, r[a]);
    }
  }
}

/// Output rows of channel `yo` = (Aᵀ M) A + shift from W; the four columns of each tile are
/// interleaved by permutes.
AVX512 static inline void outputRowPass(const Plan *p, const float *w, float *yo, float shift) {
  const size_t ws = (size_t)p->workStride;
  const int TX = p->tileColumns;
  // [y0 y1] of tiles 0..7 (or 8..15) in pairs; then tiles 0..3 (4..7) of [y0 y1]‖[y2 y3].
  const __m512i pairs = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i upperPairs = _mm512_add_epi32(pairs, _mm512_set1_epi32(8));
  const __m512i quads = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const __m512i upperQuads = _mm512_add_epi32(quads, _mm512_set1_epi32(8));
  const __m512 bias = _mm512_set1_ps(shift);
  for (int oy = 0; oy < p->outHeight; oy++) {
    const float *r = w + (size_t)(6 * (oy % 4)) * ws + (size_t)(oy / 4) * TX;
    float *dst = yo + (size_t)oy * p->outWidth;
    for (int g = 0; g < TX; g += WIDE) {  // lanes past the row's tiles are not stored
      __m512 m[6], y[4];
      for (int j = 0; j < 6; j++) m[j] = _mm512_loadu_ps(r + (size_t)j * ws + g);
      transformA(m, y);
      for (int b = 0; b < 4; b++) y[b] = _mm512_add_ps(y[b], bias);
      const int columns = p->outWidth - 4 * g;
      for (int half = 0; half < (TX - g > 8 ? 2 : 1); half++) {
        const __m512i index = half ? upperPairs : pairs;
        const __m512 y01 = _mm512_permutex2var_ps(y[0], index, y[1]);
        const __m512 y23 = _mm512_permutex2var_ps(y[2], index, y[3]);
        float *out = dst + 4 * g + 32 * half;
        const int left = columns - 32 * half;
        _mm512_mask_storeu_ps(
            out, prefixMask16(left), _mm512_permutex2var_ps(y01, quads, y23));
        _mm512_mask_storeu_ps(
            out + WIDE, prefixMask16(left - WIDE), _mm512_permutex2var_ps(y01, upperQuads, y23));
      }
    }
  }
}

AVX512 void winogradF4Output(
    const Plan *p, const float *m, int image, float *y, const float *bias, float *work) {
  const size_t plane = (size_t)p->outHeight * p->outWidth, half = (size_t)24 * p->workStride;
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

// MARK: Output gradient

/// `gradientRowPass` for the group of tiles g ..< g + 16, as `inputRowGroup`.
AVX512 __attribute__((always_inline)) static inline void gradientRowGroup(
    const Plan *p, const float *dyo, float *w, int g, int upper) {
  const size_t ws = (size_t)p->workStride;
  const int TX = p->tileColumns;
  __mmask16 mask[4];
  for (int s = 0; s < 4; s++) mask[s] = segmentMask(4 * g + 16 * s, p->outWidth);
  const __mmask16 lanes = prefixMask16(TX - g);
  for (int oy = 0; oy < 4 * p->tileRows; oy++) {
    const __mmask16 inside = oy < p->outHeight ? 0xFFFF : 0;
    const float *src = dyo + (size_t)(inside ? oy : 0) * p->outWidth + 4 * g;
    __m512 s[4], d[4], r[6];
    for (int q = 0; q < (upper ? 4 : 2); q++) {
      s[q] = _mm512_maskz_loadu_ps(mask[q] & inside, src + 16 * q);
    }
    for (int b = 0; b < 4; b++) d[b] = gatherColumn(s, strideFour(b), upper);
    transformATransposed(d, r);
    storeRows(w + (size_t)(6 * (oy % 4)) * ws + (size_t)(oy / 4) * TX + g, ws, lanes, r, 6);
  }
}

/// W[6a + j][ty·TX + tx] = (dY Aᵀ)[a][j] of output row 4ty + a of one channel `dyo`; rows and
/// columns past the map read as zeros.
AVX512 static inline void gradientRowPass(const Plan *p, const float *dyo, float *w) {
  for (int g = 0; g < p->tileColumns; g += WIDE) {
    if (p->tileColumns - g > 8) {
      gradientRowGroup(p, dyo, w, g, 1);
    } else {
      gradientRowGroup(p, dyo, w, g, 0);
    }
  }
}

/// Z_o[6i + j] = (A (dY Aᵀ))[i][j] from W, spilling as `inputColumnPass`.
AVX512 static inline void gradientColumnPass(const Plan *p, const float *w, float *zo) {
  const size_t ws = (size_t)p->workStride, plane = (size_t)p->ldt;
  for (int t = 0; t < p->tilesPerImage; t += WIDE) {
    for (int j = 0; j < 6; j++) {
      __m512 d[4], r[6];
      for (int a = 0; a < 4; a++) d[a] = _mm512_loadu_ps(w + (size_t)(6 * a + j) * ws + t);
      transformATransposed(d, r);
      for (int i = 0; i < 6; i++) _mm512_storeu_ps(zo + (size_t)(6 * i + j) * plane + t, r[i]);
    }
  }
}

AVX512 void winogradF4Gradient(
    const Plan *p, const float *dy, int image, float *z, float *work) {
  rowsThenColumns(
      p, p->outChannels, gradientRowPass, dy, (size_t)p->outHeight * p->outWidth,
      gradientColumnPass, z, image, work);
}

#endif  // defined(__x86_64__)
