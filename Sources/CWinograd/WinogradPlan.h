// What the Winograd files share: the micro-kernel's block sizes, the plan of one chunk's work
// and the transforms each file provides. Private to CWinograd (not under include/).

#ifndef DIFFEQNET_WINOGRAD_PLAN_H
#define DIFFEQNET_WINOGRAD_PLAN_H

#include <stddef.h>

// MR × NR is the micro-kernel's block: 6 output channels by 16 tiles with AVX2 (twelve of its
// sixteen 8-lane registers accumulate), 8 by 32 with AVX-512 (`MR_WIDE`, `NR_WIDE`: sixteen of
// thirty-two 16-lane registers; 8 rows divide the 16, 32 and 64 channels of a CIFAR ResNet's
// stages, where 6 computed 18 rows for 16). V and M are planned for the wider kernel on every CPU.
enum { MR = 6, MR_WIDE = 8, NR = 16, NR_WIDE = 32, LANES = 8 };

static inline int roundUp(int v, int m) { return (v + m - 1) / m * m; }


/// F(4×4, 3×3) transforms 16 images at once, one per lane (`F4_IMAGES`), in blocks of whole tile
/// rows of about `F4_BLOCK_TILES` tiles, so that V and M of a block stay in a core's L2 cache,
/// through a work array of `F4_SLOTS` row slots.
enum { F4_IMAGES = 16, F4_BLOCK_TILES = 128, F4_SLOTS = 8 };

/// The sizes of one chunk's work for F(m×m, 3×3), m = `tile` (2 or 4): m × m output tiles,
/// α = m + 2, α² positions ξ.
///
/// F(2×2, 3×3) numbers a chunk's tiles t = image·T + ty·TX + tx and transforms all of them at
/// once. F(4×4, 3×3) works through groups of up to 16 images and, in each, blocks of
/// `blockRows` tile rows; a block's tiles are t = ((ty − first row)·TX + tx)·16 + image, so
/// that one tile's 16 images are 16 contiguous floats.
typedef struct {
  int channels, height, width, outChannels, pad;
  int outHeight, outWidth;
  int tile, alpha, positions;  // m, α, α²
  int tileRows, tileColumns;   // TY, TX
  int tilesPerImage;           // T
  int ldt;                     // row length of V and M
  size_t block;                // distance between channels in V and M: α²·ldt + 16
  // F(2×2, 3×3) with AVX2: a group of 8 lanes holds two tile rows of at most 4 (`pairRows`), read
  // from a zero-bordered copy of each channel of padRows × padColumns.
  int pairRows;
  int padRows, padColumns;
  size_t padPlane;
  // F(4×4, 3×3) with AVX-512: tile rows per block, and the 16-image vectors per row slot of the
  // work array (a padded input row, or an output row).
  int blockRows;
  int slotColumns;
  size_t padCount;  // room for the copies or the row slots, a whole number of cache lines
} Plan;

static inline int maxInt(int a, int b) { return a > b ? a : b; }

static inline Plan makePlan(
    int images, int channels, int height, int width, int outChannels, int pad, int tile) {
  Plan p;
  p.channels = channels;
  p.height = height;
  p.width = width;
  p.outChannels = outChannels;
  p.pad = pad;
  p.outHeight = height + 2 * pad - 2;
  p.outWidth = width + 2 * pad - 2;
  p.tile = tile;
  p.alpha = p.tile + 2;
  p.positions = p.alpha * p.alpha;
  p.tileRows = (p.outHeight + p.tile - 1) / p.tile;
  p.tileColumns = (p.outWidth + p.tile - 1) / p.tile;
  p.tilesPerImage = p.tileRows * p.tileColumns;
  // Blocks of equal height, each at most F4_BLOCK_TILES tiles where a tile row allows.
  const int maxRows = maxInt(1, F4_BLOCK_TILES / (F4_IMAGES * p.tileColumns));
  const int blocks = (p.tileRows + maxRows - 1) / maxRows;
  p.blockRows = (p.tileRows + blocks - 1) / blocks;
  const int tiles =
      tile == 4 ? p.blockRows * p.tileColumns * F4_IMAGES : images * p.tilesPerImage;
  // Slack of a panel: the last 8- or 16-lane store or load may start at the last tile.
  p.ldt = roundUp(tiles, NR_WIDE) + NR_WIDE;
  // A row stride that is a multiple of 4 KiB would put every row of a panel in one L1 set.
  p.block = (size_t)p.positions * p.ldt + 16;  // plus one cache line
  p.pairRows = p.tileColumns <= 4;
  // A paired group reads two tile rows, the second past the end when TY is odd.
  p.padRows = 2 * roundUp(p.tileRows, 2) + 2;
  // Tile columns are transformed 8 at a time: the last group reads up to 2·TXr + 3.
  p.padColumns = 2 * roundUp(p.tileColumns, LANES) + 4;
  p.padPlane = (size_t)p.padRows * p.padColumns;
  // A slot holds the padded input row the tiles read (4·TX + 2 columns) and the whole 16-column
  // segments that the transposes of input and output rows write.
  p.slotColumns = maxInt(
      maxInt(4 * p.tileColumns + 2, pad + roundUp(width, F4_IMAGES)),
      roundUp(p.outWidth, F4_IMAGES));
  const size_t planes = (size_t)(channels > outChannels ? channels : outChannels);
  const size_t room =
      tile == 4 ? (size_t)F4_SLOTS * p.slotColumns * F4_IMAGES : p.padPlane * planes;
  // Whole cache lines, so that what follows in the scratch (the weight gradient's panels, which
  // the micro-kernel reads 16 floats at a time) starts on one.
  p.padCount = (room + 15) / 16 * 16;
  return p;
}

#define WINOGRAD_INTERNAL __attribute__((visibility("hidden")))

// F(2×2, 3×3) with AVX2 (WinogradF2Transforms.c). `padded` holds padCount floats, zero outside
// the interiors the functions write.

/// V[c][ξ][image·T + tile] = (Bᵀ d B)[ξ] for every tile of one image.
WINOGRAD_INTERNAL void winogradF2Input(
    const Plan *p, const float *x, int image, float *v, float *padded);

/// y[o] = Aᵀ M A + bias[o] (bias may be NULL) for every tile of one image.
WINOGRAD_INTERNAL void winogradF2Output(
    const Plan *p, const float *m, int image, float *y, const float *bias);

/// Z[o][ξ][image·T + tile] = (A dY Aᵀ)[ξ] for every tile of one image.
WINOGRAD_INTERNAL void winogradF2Gradient(
    const Plan *p, const float *dy, int image, float *z, float *padded);

// F(4×4, 3×3) with AVX-512 (WinogradF4Transforms.c), for the tile rows firstRow ..< firstRow +
// rows of `count` ≤ 16 images, x, y and dy pointing at the first image: the same contracts in
// the block's layout (Plan), with `work` of padCount floats in place of `padded`. Lanes of
// images past `count` are zero in V and Z.

WINOGRAD_INTERNAL void winogradF4Input(
    const Plan *p, const float *x, int count, int firstRow, int rows, float *v, float *work);

WINOGRAD_INTERNAL void winogradF4Output(
    const Plan *p, const float *m, int count, int firstRow, int rows, float *y, const float *bias,
    float *work);

WINOGRAD_INTERNAL void winogradF4Gradient(
    const Plan *p, const float *dy, int count, int firstRow, int rows, float *z, float *work);

#endif
