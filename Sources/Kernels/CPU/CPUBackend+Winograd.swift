import CWinograd

/// 3×3 stride-1 float32 convolutions by Winograd (`CWinograd`), which ODE-Net's vector field and
/// the CIFAR ResNets spend most of their time in: F(4×4, 3×3) with AVX-512, 4× fewer
/// multiplications than the direct lowerings, where its tiles fit the map (`winogradTile`); else
/// F(2×2, 3×3), 2.25× fewer, with the AVX-512 micro-kernel where the CPU has it. Backward data
/// with stride 1 is itself such a convolution (of dy with the kernel rotated by 180° and its
/// channel axes swapped, padding 2 − p), so it runs the same way; the weight gradient is the
/// forward formula's gradient with respect to the transformed kernel, taken back through the
/// kernel transform.
///
/// The error stays at float32 rounding: F(2×2, 3×3)'s transforms multiply by 0, ±½ and ±1 only,
/// F(4×4, 3×3)'s by up to 8 and 1/24, which costs a few ulps more (2–3e-6 relative at 16–65
/// channels, where the direct path is near 1e-7). The kernel tests hold both to the 1e-5
/// relative tolerance of the direct path against a float64 reference.
extension CPUBackend {
  /// F(2×2, 3×3)'s tiles per chunk of images, whose transformed input and products take
  /// 16·(C + O)·4 bytes per tile: small enough to stay in a core's L2 cache while the other ops
  /// of a training step run between convolutions, large enough to fill the micro-kernel's panels
  /// of 32 tiles. 100 (2 images of ODE-Net's 14×14 maps, under 1 MB at 65 + 64 channels) was the
  /// fastest of 50 to 250 in `bench solvers`' rk4_adjoint on a 2 MB L2. (F(4×4, 3×3) works
  /// through its chunks in blocks of tile rows, `F4_BLOCK_TILES` in CWinograd.)
  static let chunkTiles = 100

  /// Whether this CPU runs the AVX2 + FMA Winograd code at all.
  static let winogradAvailable = diffeqnet_winograd_available() != 0

  /// Whether it also runs the AVX-512 code: the 8×32 micro-kernel and F(4×4, 3×3).
  static let wideWinogradAvailable = diffeqnet_winograd_wide_available() != 0

  /// Whether a convolution of geometry `g` (forward, backward data and weight gradient alike)
  /// runs by Winograd: 3×3, stride 1, padding at most 2 (backward data needs 2 − p ≥ 0), float32,
  /// at least 16 channels on each side (below that the transforms cost more than they save), and
  /// at most `maxTilesPerImage` tiles per image.
  public func winogradFits(_ g: ConvGeometry, outChannels o: Int, dtype: DType) -> Bool {
    usesWinograd && dtype == .float32 && g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad <= 2
      && g.c >= 16 && o >= 16 && g.n > 0 && g.outH > 0 && g.outW > 0
      && Self.tilesPerImage(outHeight: g.outH, outWidth: g.outW) <= Self.maxTilesPerImage
  }

  /// A chunk is at least one image, and its scratch grows with the map: 1024 tiles (64×64
  /// outputs) take about 8.7 MB per core at 64 + 64 channels. Larger maps stay on the direct
  /// path. (Single-threaded, 64 → 64 channels with warm caches, Winograd ran at 139, 105 and 82
  /// effective GFLOP/s on 28², 64² and 128² maps; the direct path at 55–70.)
  static let maxTilesPerImage = 1024

  /// 2×2 output tiles covering an outHeight × outWidth map: the size that `maxTilesPerImage`
  /// bounds, whichever algorithm runs.
  static func tilesPerImage(outHeight: Int, outWidth: Int) -> Int {
    tilesPerImage(outHeight: outHeight, outWidth: outWidth, tile: 2)
  }

  /// tile × tile output tiles covering an outHeight × outWidth map.
  static func tilesPerImage(outHeight: Int, outWidth: Int, tile: Int) -> Int {
    (outHeight + tile - 1) / tile * ((outWidth + tile - 1) / tile)
  }

  /// The C functions' `wide`: the AVX-512 micro-kernel, else the AVX2 one.
  private var winogradWide: Int32 { usesAVX512 ? 1 : 0 }

  /// The images F(4×4, 3×3) transforms at once, one per lane, and at most takes in a chunk.
  static let wideTileImages = 16

  /// The tile size m of F(m×m, 3×3) for `images` outHeight × outWidth outputs: 4 with AVX-512
  /// where its 36 products per tile come to at most 0.8 of F(2×2, 3×3)'s 16 per (smaller) tile
  /// and there are at least `wideTileImages` images, else 2.
  /// - On 6×6 maps (ODE-Net's) both take 144 products per image, and the larger tile's costlier
  ///   transforms lose; on 7×7, 14×14 and 28×28 maps the larger tile takes 0.56–0.73 of them.
  /// - The larger tile's transforms and products cost as much for 1 image as for 16 (a lane
  ///   each), so that it ties F(2×2, 3×3) at 8 images to a core and wins from 12 on.
  public func winogradTile(images: Int, outHeight: Int, outWidth: Int) -> Int {
    guard usesAVX512, images >= Self.wideTileImages else { return 2 }
    let small = 16 * Self.tilesPerImage(outHeight: outHeight, outWidth: outWidth, tile: 2)
    let large = 36 * Self.tilesPerImage(outHeight: outHeight, outWidth: outWidth, tile: 4)
    return 5 * large <= 4 * small ? 4 : 2
  }

  /// The chunks of n images: at most `wideTileImages` each for F(4×4, 3×3), in a whole number
  /// per core; else at most `chunkTiles` tiles, at least one image.
  private func chunks(n: Int, outHeight: Int, outWidth: Int, tile: Int) -> ImageChunks {
    if tile == 4 { return ImageChunks(n: n, atMost: Self.wideTileImages) }
    let tiles = Self.tilesPerImage(outHeight: outHeight, outWidth: outWidth, tile: tile)
    return ImageChunks(n: n, imagesPerChunk: max(1, Self.chunkTiles / tiles))
  }

  /// y [n, o, Ho, Wo] = conv(x [n, c, h, w], w) + bias[o], or with `backwardData` (and no bias)
  /// dx [n, c, h, w] from dy [n, o, Ho, Wo]; `w` is the forward kernel [o, c, 3, 3] either way.
  func winogradConvolution(
    _ input: UnsafePointer<Float>, _ w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    _ output: UnsafeMutablePointer<Float>, outChannels o: Int, _ g: ConvGeometry,
    backwardData: Bool
  ) throws {
    // The convolution actually run: backward data convolves dy with the rotated kernel.
    let (channels, height, width, outChannels, pad) =
      backwardData
      ? (o, g.outH, g.outW, g.c, 2 - g.pad) : (g.c, g.h, g.w, o, g.pad)
    let outHeight = height + 2 * pad - 2
    let outWidth = width + 2 * pad - 2
    let tile = winogradTile(images: g.n, outHeight: outHeight, outWidth: outWidth)
    let chunks = chunks(n: g.n, outHeight: outHeight, outWidth: outWidth, tile: tile)
    let wide = winogradWide
    let packedCount = diffeqnet_winograd_packed_kernel_count(
      Int32(outChannels), Int32(channels), Int32(tile), wide)
    let scratchCount = Self.cacheLineMultiple(
      diffeqnet_winograd_scratch_count(
        Int32(chunks.largest), Int32(channels), Int32(height), Int32(width), Int32(outChannels),
        Int32(pad), Int32(tile)))
    let packedBuffer = try scratch(packedCount)
    let scratchBuffer = try scratch(chunks.workers * scratchCount)
    withExtendedLifetime((packedBuffer, scratchBuffer)) {
      let (packed, scratch) = (packedBuffer.pointer(Float.self), scratchBuffer.pointer(Float.self))
      let panelCount = Int(diffeqnet_winograd_kernel_panels(Int32(outChannels), wide))
      parallelFor(panelCount, grain: 1) { panels in
        diffeqnet_winograd_pack_kernel(
          w, Int32(outChannels), Int32(channels), backwardData ? 1 : 0, Int32(tile), wide,
          packed, Int32(panels.lowerBound), Int32(panels.count))
      }
      Self.forEachChunk(chunks) { images, worker in
        diffeqnet_winograd_forward(
          packed, bias, input + images.lowerBound * channels * height * width,
          output + images.lowerBound * outChannels * outHeight * outWidth, Int32(images.count),
          Int32(channels), Int32(height), Int32(width), Int32(outChannels), Int32(pad),
          Int32(tile), wide, scratch + worker * scratchCount)
      }
    }
  }

  /// dw [o, c, 3, 3] = Σₙ the weight gradient of image n, from dy [n, o, Ho, Wo] and
  /// x [n, c, h, w]. Each worker sums its fixed run of chunks in its own transformed gradient,
  /// so the rounding, like the direct path's, does not depend on timing.
  func winogradBackwardWeights(
    _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>,
    outChannels o: Int, _ g: ConvGeometry
  ) throws {
    let tile = winogradTile(images: g.n, outHeight: g.outH, outWidth: g.outW)
    let chunks = chunks(n: g.n, outHeight: g.outH, outWidth: g.outW, tile: tile)
    let wide = winogradWide
    let size = diffeqnet_winograd_weight_gradient_count(Int32(o), Int32(g.c), Int32(tile))
    let scratchCount = Self.cacheLineMultiple(
      diffeqnet_winograd_weight_scratch_count(
        Int32(chunks.largest), Int32(g.c), Int32(g.h), Int32(g.w), Int32(o), Int32(g.pad),
        Int32(tile)))
    let scratchBuffer = try scratch(chunks.workers * scratchCount)
    let partialsBuffer = try scratch(chunks.workers * size)
    withExtendedLifetime((scratchBuffer, partialsBuffer)) {
      let scratch = scratchBuffer.pointer(Float.self)
      let partials = partialsBuffer.pointer(Float.self)
      // Every worker has at least one chunk (workers ≤ chunks), whose call overwrites its
      // partial.
      Self.forEachChunk(chunks, deterministic: true) { images, worker in
        let first = images.lowerBound == chunks[worker * chunks.count / chunks.workers].lowerBound
        diffeqnet_winograd_weight_gradient(
          x + images.lowerBound * g.c * g.h * g.w, dy + images.lowerBound * o * g.outH * g.outW,
          Int32(images.count), Int32(g.c), Int32(g.h), Int32(g.w), Int32(o), Int32(g.pad),
          partials + worker * size, first ? 0 : 1, Int32(tile), wide,
          scratch + worker * scratchCount)
      }
      parallelFor(o, grain: 1) { outs in
        diffeqnet_winograd_finish_weight_gradient(
          partials, Int32(chunks.workers), Int32(o), Int32(g.c), Int32(tile), dw,
          Int32(outs.lowerBound), Int32(outs.count))
      }
    }
  }

  /// `count` floats of scratch from the pool: 64-byte aligned (the micro-kernel reads 16-float
  /// panels at multiples of 16 floats from the start, which then never straddle two cache
  /// lines), counted in the pool's bytes, and reused from call to call (a fresh multi-megabyte
  /// allocation per convolution cost page faults: 68,000 in rk4_adjoint against 16,000).
  private func scratch(_ count: Int) throws -> DeviceBuffer { try allocate(count, .float32) }

  /// `count` rounded up to whole cache lines of floats, so that every worker's scratch is aligned.
  private static func cacheLineMultiple(_ count: Int) -> Int { (count + 15) / 16 * 16 }
}
