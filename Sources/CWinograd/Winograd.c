// Winograd F(m×m, 3×3): each m×m output tile Y of a 3×3 convolution is
//
//   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
//
// where d_c is the α×α input patch (α = m + 2) of channel c under the tile. The sum over channels
// at each of the α² positions ξ of the transformed tile is a matrix product
// M_ξ [O, tiles] = U_ξ [O, C] · V_ξ [C, tiles]: α²·O·C·tiles multiply-adds in all, against
// 9·m²·O·C·tiles for the direct convolution. Two sizes run here:
//
// - F(2×2, 3×3) with AVX2 (WinogradF2Transforms.c): 16 positions for 4 outputs, 2.25× fewer
//   multiplications, transforms that multiply by 0, ±½ and ±1 only;
//     Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//     Aᵀ = [1 1 1 0; 0 1 −1 −1].
// - F(4×4, 3×3) with AVX-512 (WinogradF4Transforms.c): 36 positions for 16 outputs, 4× fewer
//   multiplications and 1.8× less transformed data per output than F(2×2, 3×3), with 16 images
//   in the lanes of every vector; G has the entries ±¼, ±⅙, 1/12, 1/24 (the points 0, ±1, ±2,
//   ∞), which costs float32 a few ulps more.
//
// Layout, for the tiles transformed at once (numbered as WinogradPlan.h says: a chunk of images
// for F(2×2, 3×3), a block of tile rows of up to 16 images for F(4×4, 3×3)):
//   packed kernel  U[ξ][O/MR][C][MR] MR output channels side by side (the micro-kernel's rows)
//   V              V[C][ξ][ldt]      transformed input tiles, tiles contiguous
//   M              M[O][ξ][ldt]      products before the output transform
// ldt is the tile count rounded up to whole 32-tile panels plus slack, so that 8- and 16-lane
// stores and loads past the last tile stay inside the buffer. A channel's α² rows are adjacent,
// so the transforms, which touch all α² ξ of a tile at once, stay within a few kilobytes;
// channels are `block` = α²·ldt + 16 floats apart, an odd number of cache lines, so that the
// GEMM's column of 65 or so rows at that stride spreads over all L1 sets instead of a few.

#include "CWinograd.h"
#include "CSIMDSupport.h"
#include "WinogradPlan.h"

#if defined(__x86_64__)  // elsewhere: WinogradUnavailable.c

#include <immintrin.h>
#include <string.h>

/// The micro-kernel's rows: the width of the packed kernel's panels.
static int microRows(int wide) { return wide ? MR_WIDE : MR; }

int diffeqnet_winograd_available(void) { return diffeqnet_cpu_has_avx2_fma(); }

int diffeqnet_winograd_wide_available(void) { return diffeqnet_cpu_has_avx512f(); }

int diffeqnet_winograd_kernel_panels(int outChannels, int wide) {
  return roundUp(outChannels, microRows(wide)) / microRows(wide);
}

/// α² = (m + 2)², the positions of a transformed tile of m × m outputs.
static int positionCount(int tile) { return (tile + 2) * (tile + 2); }

/// G (α × 3) of F(2×2, 3×3) and of F(4×4, 3×3).
static const float transformG2[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
static const float transformG4[6][3] = {
    {0.25f, 0, 0},
    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6},
    {1.0f / 24, -1.0f / 12, 1.0f / 6},
    {0, 0, 1}};

size_t diffeqnet_winograd_packed_kernel_count(
    int outChannels, int inChannels, int tile, int wide) {
  return (size_t)positionCount(tile) * (size_t)roundUp(outChannels, microRows(wide))
         * (size_t)inChannels;
}

/// U = G g Gᵀ of the kernels of the panels firstPanel ..< endPanel into `packed` (`panels`
/// panels of mr output channels, one per lane; lanes past the last channel are zero), with
/// `alpha` a constant after inlining so that the products unroll.
__attribute__((target("avx2,fma"), always_inline)) static inline void transformKernels(
    const float *w, int outChannels, int inChannels, int transposeFlip, int alpha, int mr,
    int panels, float *packed, int firstPanel, int endPanel) {
  const float(*gm)[3] = alpha == 6 ? transformG4 : transformG2;
  const size_t stride = (size_t)panels * inChannels * mr;  // from one ξ to the next
  const __m256i rows = diffeqnet_prefix_mask(mr);
  for (int panel = firstPanel; panel < endPanel; panel++) {
    const int first = panel * mr;
    const int count = outChannels - first < mr ? outChannels - first : mr;
    for (int c = 0; c < inChannels; c++) {
      float g[9][LANES] = {{0}};  // g[3i + j][l]: tap (i, j) of output channel first + l
      for (int l = 0; l < count; l++) {
        for (int k = 0; k < 9; k++) {
          g[k][l] = transposeFlip ? w[((size_t)c * outChannels + first + l) * 9 + 8 - k]
                                  : w[((size_t)(first + l) * inChannels + c) * 9 + k];
        }
      }
      __m256 gv[9];
      for (int k = 0; k < 9; k++) gv[k] = _mm256_loadu_ps(g[k]);
      float *dst = packed + ((size_t)panel * inChannels + c) * mr;
      for (int i = 0; i < alpha; i++) {
        __m256 t[3];  // (G g)[i]
        for (int j = 0; j < 3; j++) {
          t[j] = _mm256_mul_ps(_mm256_set1_ps(gm[i][0]), gv[j]);
          t[j] = _mm256_fmadd_ps(_mm256_set1_ps(gm[i][1]), gv[3 + j], t[j]);
          t[j] = _mm256_fmadd_ps(_mm256_set1_ps(gm[i][2]), gv[6 + j], t[j]);
        }
        for (int j = 0; j < alpha; j++) {  // ((G g) Gᵀ)[i][j]
          __m256 u = _mm256_mul_ps(t[0], _mm256_set1_ps(gm[j][0]));
          u = _mm256_fmadd_ps(t[1], _mm256_set1_ps(gm[j][1]), u);
          u = _mm256_fmadd_ps(t[2], _mm256_set1_ps(gm[j][2]), u);
          float *out = dst + (size_t)(i * alpha + j) * stride;
          if (mr == LANES) {
            _mm256_storeu_ps(out, u);
          } else {
            _mm256_maskstore_ps(out, rows, u);
          }
        }
      }
    }
  }
}

__attribute__((target("avx2,fma"))) void diffeqnet_winograd_pack_kernel(
    const float *w, int outChannels, int inChannels, int transposeFlip, int tile, int wide,
    float *packed, int firstPanel, int panelCount) {
  const int mr = microRows(wide);
  const int panels = roundUp(outChannels, mr) / mr, end = firstPanel + panelCount;
  if (tile == 4) {
    transformKernels(
        w, outChannels, inChannels, transposeFlip, 6, mr, panels, packed, firstPanel, end);
  } else {
    transformKernels(
        w, outChannels, inChannels, transposeFlip, 4, mr, panels, packed, firstPanel, end);
  }
}

size_t diffeqnet_winograd_scratch_count(
    int images, int channels, int height, int width, int outChannels, int pad, int tile) {
  const Plan p = makePlan(images, channels, height, width, outChannels, pad, tile);
  return p.block * (size_t)(channels + outChannels) + p.padCount;
}

/// Zeroes the `count` (< 32) floats at `dst`: the tail of one of the α²·C rows of V or Z, too
/// short for a memset call to pay.
__attribute__((target("avx2,fma"))) static inline void zeroTail(float *dst, int count) {
  for (int k = 0; k < count; k += LANES) {
    _mm256_maskstore_ps(dst + k, diffeqnet_prefix_mask(count - k), _mm256_setzero_ps());
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

/// `microKernel` with AVX-512 for an 8-row panel of packed A, over `halves` (1 or 2, a constant
/// after inlining) 16-lane accumulators per row: sixteen accumulators cover a 32-column panel of
/// B (row stride ldb); a last panel of at most 16 columns takes eight.
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

/// Zeroes the columns tiles ..< `end` of V's α²·`channels` rows (of `block` floats): the last
/// panel's columns past the last tile, which the micro-kernel reads.
__attribute__((target("avx2,fma"))) static void zeroTails(
    const Plan *p, float *v, int channels, int tiles, int end) {
  for (int row = 0; row < p->positions * channels; row++) {
    zeroTail(
        v + (size_t)(row / p->positions) * p->block + (size_t)(row % p->positions) * p->ldt + tiles,
        end - tiles);
  }
}

/// M_ξ = U_ξ V_ξ for the first `tiles` columns of V, for every ξ.
__attribute__((target("avx2,fma"))) static void multiply(
    const Plan *p, const float *packed, float *v, float *m, int tiles, int wide) {
  int nr;
  MicroKernel *kernel = selectMicroKernel(wide, &nr);
  const int mr = microRows(wide), channels = p->channels, outChannels = p->outChannels;
  const int tilePanels = (tiles + nr - 1) / nr;
  const int rowPanels = roundUp(outChannels, mr) / mr;
  // The last panel's columns past the last tile must be finite (they are computed, then
  // dropped); the transforms' spill wrote some of them, the rest may hold anything.
  zeroTails(p, v, channels, tiles, tilePanels * nr);
  for (int xi = 0; xi < p->positions; xi++) {
    const float *u = packed + (size_t)xi * rowPanels * mr * channels;
    const float *vx = v + (size_t)xi * p->ldt;
    float *mx = m + (size_t)xi * p->ldt;
    for (int tp = 0; tp < tilePanels; tp++) {
      // Products past the last tile are never read, so a short last panel may skip them.
      const int columns = tiles - tp * nr < nr ? tiles - tp * nr : nr;
      for (int rp = 0; rp < rowPanels; rp++) {
        const int rows = outChannels - rp * mr < mr ? outChannels - rp * mr : mr;
        kernel(
            channels, u + (size_t)rp * mr * channels, vx + (size_t)tp * nr, p->block,
            mx + (size_t)rp * mr * p->block + (size_t)tp * nr, p->block, rows, columns, 0);
      }
    }
  }
}

/// One block of F(4×4, 3×3)'s work: `count` ≤ 16 images from `first`, tile rows row ..< row +
/// rows, and its tiles.
typedef struct {
  int first, count, row, rows, tiles;
} Block;

static inline Block blockAt(const Plan *p, int images, int first, int row) {
  Block b;
  b.first = first;
  b.count = images - first < F4_IMAGES ? images - first : F4_IMAGES;
  b.row = row;
  b.rows = p->tileRows - row < p->blockRows ? p->tileRows - row : p->blockRows;
  b.tiles = b.rows * p->tileColumns * F4_IMAGES;
  return b;
}

/// The block after b: the next tile rows of the same images, else the next images' first rows.
/// Past the last block, `first` ≥ images.
static inline Block nextBlock(const Plan *p, int images, Block b) {
  return b.row + b.rows < p->tileRows ? blockAt(p, images, b.first, b.row + b.rows)
                                      : blockAt(p, images, b.first + F4_IMAGES, 0);
}

__attribute__((target("avx2,fma"))) void diffeqnet_winograd_forward(
    const float *packed, const float *bias, const float *x, float *y, int images, int channels,
    int height, int width, int outChannels, int pad, int tile, int wide, float *scratch) {
  const Plan p = makePlan(images, channels, height, width, outChannels, pad, tile);
  float *v = scratch;
  float *m = v + p.block * channels;
  float *work = m + p.block * outChannels;
  const size_t inSize = (size_t)channels * height * width;
  const size_t outSize = (size_t)outChannels * p.outHeight * p.outWidth;
  if (tile == 4) {
    for (Block b = blockAt(&p, images, 0, 0); b.first < images; b = nextBlock(&p, images, b)) {
      winogradF4Input(&p, x + b.first * inSize, b.count, b.row, b.rows, v, work);
      multiply(&p, packed, v, m, b.tiles, wide);
      winogradF4Output(&p, m, b.count, b.row, b.rows, y + b.first * outSize, bias, work);
    }
    return;
  }
  memset(work, 0, p.padCount * sizeof(float));
  for (int n = 0; n < images; n++) winogradF2Input(&p, x + n * inSize, n, v, work);
  multiply(&p, packed, v, m, images * p.tilesPerImage, wide);
  for (int n = 0; n < images; n++) winogradF2Output(&p, m, n, y + n * outSize, bias);
}

// MARK: Weight gradient
//
// With Z = A dY Aᵀ the α×α transform of an m×m tile of the output gradient, the forward formula
// gives dU_ξ[o][c] = Σ_tiles Z_ξ[o][t] V_ξ[c][t] and dg = Gᵀ dU G. Z is laid out like M in the
// forward pass (Z[O][ξ][ldt]). For each ξ both factors are copied into the micro-kernel's panels
// with the tiles as the depth (V in MR-channel panels, Z in panels as wide as the micro-kernel's)
// and multiplied into dUᵀ_ξ [C][O], so that the forward pass's micro-kernel does the work.

/// Floats of the two panel copies for one ξ.
static size_t panelCount(const Plan *p, int depth) {
  // Channel panels of either micro-kernel's rows: 18 rows of 6 hold 16 channels, 16 of 8 hold 17.
  const int narrow = roundUp(p->channels, MR), wide = roundUp(p->channels, MR_WIDE);
  return (size_t)depth * (size_t)((narrow > wide ? narrow : wide) + roundUp(p->outChannels, NR_WIDE))
         + LANES;
}

size_t diffeqnet_winograd_weight_gradient_count(int outChannels, int inChannels, int tile) {
  return (size_t)positionCount(tile) * (size_t)outChannels * (size_t)inChannels;
}

size_t diffeqnet_winograd_weight_scratch_count(
    int images, int channels, int height, int width, int outChannels, int pad, int tile) {
  const Plan p = makePlan(images, channels, height, width, outChannels, pad, tile);
  // The forward pass's V, M (here Z) and padded plane or work arrays, and the panels.
  const int tiles =
      tile == 4 ? p.blockRows * p.tileColumns * F4_IMAGES : images * p.tilesPerImage;
  return diffeqnet_winograd_scratch_count(images, channels, height, width, outChannels, pad, tile)
         + panelCount(&p, roundUp(tiles, LANES));
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

/// dUᵀ_ξ (+)= V_ξ Z_ξᵀ over the first `tiles` columns of V and Z, for every ξ, through the
/// panel copies at `panels`.
__attribute__((target("avx2,fma"))) static void accumulateProducts(
    const Plan *p, float *v, float *z, int tiles, float *panels, float *transformedGradient,
    int accumulate, int wide) {
  int nr;
  MicroKernel *kernel = selectMicroKernel(wide, &nr);
  const int mr = microRows(wide), channels = p->channels, outChannels = p->outChannels;
  const int depth = roundUp(tiles, LANES);
  float *vPanels = panels, *zPanels = panels + (size_t)depth * roundUp(channels, mr);
  // Both factors' columns past the last tile are zero, so they add nothing to the products.
  zeroTails(p, v, channels, tiles, depth);
  zeroTails(p, z, outChannels, tiles, depth);
  for (int xi = 0; xi < p->positions; xi++) {
    packPanels(v + (size_t)xi * p->ldt, p->block, channels, mr, depth, vPanels);
    packPanels(z + (size_t)xi * p->ldt, p->block, outChannels, nr, depth, zPanels);
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

__attribute__((target("avx2,fma"))) void diffeqnet_winograd_weight_gradient(
    const float *x, const float *dy, int images, int channels, int height, int width,
    int outChannels, int pad, float *transformedGradient, int accumulate, int tile, int wide,
    float *scratch) {
  const Plan p = makePlan(images, channels, height, width, outChannels, pad, tile);
  float *v = scratch;
  float *z = v + p.block * channels;
  float *work = z + p.block * outChannels;
  float *panels = work + p.padCount;
  const size_t inSize = (size_t)channels * height * width;
  const size_t outSize = (size_t)outChannels * p.outHeight * p.outWidth;
  if (tile == 4) {
    for (Block b = blockAt(&p, images, 0, 0); b.first < images; b = nextBlock(&p, images, b)) {
      winogradF4Input(&p, x + b.first * inSize, b.count, b.row, b.rows, v, work);
      winogradF4Gradient(&p, dy + b.first * outSize, b.count, b.row, b.rows, z, work);
      accumulateProducts(
          &p, v, z, b.tiles, panels, transformedGradient, accumulate || b.first > 0 || b.row > 0,
          wide);
    }
    return;
  }
  // The AVX2 transforms need the zero borders of their copies; each pass zeroes them afresh
  // because the input's and the gradient's copies differ in shape.
  memset(work, 0, p.padCount * sizeof(float));
  for (int n = 0; n < images; n++) winogradF2Input(&p, x + n * inSize, n, v, work);
  memset(work, 0, p.padCount * sizeof(float));
  for (int n = 0; n < images; n++) winogradF2Gradient(&p, dy + n * outSize, n, z, work);
  accumulateProducts(
      &p, v, z, images * p.tilesPerImage, panels, transformedGradient, accumulate, wide);
}

/// dw = Gᵀ (Σ_k dU_k) G for output channels firstOut ..< endOut, 8 at a time (one per lane),
/// with `alpha` a constant after inlining.
__attribute__((target("avx2,fma"), always_inline)) static inline void finishKernels(
    const float *transformedGradients, int count, int outChannels, int inChannels, int alpha,
    float *dw, int firstOut, int endOut) {
  const float(*gm)[3] = alpha == 6 ? transformG4 : transformG2;
  const size_t pairs = (size_t)outChannels * inChannels, size = (size_t)alpha * alpha * pairs;
  for (int first = firstOut; first < endOut; first += LANES) {
    const int lanes = endOut - first < LANES ? endOut - first : LANES;
    const __m256i mask = diffeqnet_prefix_mask(lanes);
    for (int c = 0; c < inChannels; c++) {
      const float *src = transformedGradients + (size_t)c * outChannels + first;
      __m256 t[3][6];  // Gᵀ dU, summed over dU's rows k
      for (int i = 0; i < 3; i++) {
        for (int q = 0; q < alpha; q++) t[i][q] = _mm256_setzero_ps();
      }
      for (int k = 0; k < alpha; k++) {
        for (int q = 0; q < alpha; q++) {
          __m256 u = _mm256_setzero_ps();  // Σ_parts dU[k][q], in the parts' order
          for (int part = 0; part < count; part++) {
            u = _mm256_add_ps(
                u, _mm256_maskload_ps(src + part * size + (size_t)(k * alpha + q) * pairs, mask));
          }
          for (int i = 0; i < 3; i++) {
            t[i][q] = _mm256_fmadd_ps(_mm256_set1_ps(gm[k][i]), u, t[i][q]);
          }
        }
      }
      float g[9][LANES];  // (Gᵀ dU) G, tap 3i + j of output channel first + l at g[3i + j][l]
      for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
          __m256 s = _mm256_mul_ps(t[i][0], _mm256_set1_ps(gm[0][j]));
          for (int q = 1; q < alpha; q++) {
            s = _mm256_fmadd_ps(t[i][q], _mm256_set1_ps(gm[q][j]), s);
          }
          _mm256_storeu_ps(g[3 * i + j], s);
        }
      }
      for (int l = 0; l < lanes; l++) {
        float *out = dw + ((size_t)(first + l) * inChannels + c) * 9;
        for (int k = 0; k < 9; k++) out[k] = g[k][l];
      }
    }
  }
}

__attribute__((target("avx2,fma"))) void diffeqnet_winograd_finish_weight_gradient(
    const float *transformedGradients, int count, int outChannels, int inChannels, int tile,
    float *dw, int firstOut, int outCount) {
  if (tile == 4) {
    finishKernels(
        transformedGradients, count, outChannels, inChannels, 6, dw, firstOut,
        firstOut + outCount);
  } else {
    finishKernels(
        transformedGradients, count, outChannels, inChannels, 4, dw, firstOut,
        firstOut + outCount);
  }
}

#endif  // defined(__x86_64__)
