import CWinograd
import Kernels
import XCTest

/// The CPU backend's Winograd convolutions (forward, backward data as the rotated-kernel
/// convolution, backward weights) against float64 direct loops, on fresh random inputs,
/// NaN-poisoned outputs, within the float32 tolerance of `KernelTestCase` (1e-5 relative), with
/// each configuration the CPU runs: F(2×2, 3×3) with the AVX2 micro-kernel, and where it has
/// AVX-512, F(4×4, 3×3) (16 images and more) or (fewer images, or maps where the larger tile
/// saves little: 1×1, 6×6, 8×2 below) F(2×2, 3×3) with the AVX-512 micro-kernel.
final class CPUWinogradTests: XCTestCase, KernelTestCase {
  var rng = SplitMix64(seed: 0)
  override func setUp() { rng = seedForTestName() }

  /// (geometry, output channels): odd and even sizes (partial tiles in either axis), a 1×1 map,
  /// every padding the path takes, the ODE-Net shapes (with the time channel), and batches that
  /// split into several chunks and leave a tile row spilling into the next image. The chunks'
  /// last tile panels and the weight gradient's last channel panels cover the AVX-512 kernel's
  /// tails: at most 16 of 32 columns (36 and 98 tiles; 16 channels) and more (60 and 180 tiles;
  /// 17, 20 and 23 channels).
  static let cases: [(ConvGeometry, Int)] = [
    (ConvGeometry(n: 3, c: 16, h: 7, w: 5, kh: 3, kw: 3, stride: 1, pad: 1), 17),
    (ConvGeometry(n: 1, c: 19, h: 1, w: 1, kh: 3, kw: 3, stride: 1, pad: 1), 16),
    (ConvGeometry(n: 2, c: 16, h: 9, w: 12, kh: 3, kw: 3, stride: 1, pad: 0), 20),
    (ConvGeometry(n: 5, c: 24, h: 6, w: 3, kh: 3, kw: 3, stride: 1, pad: 2), 16),
    (ConvGeometry(n: 2, c: 65, h: 14, w: 14, kh: 3, kw: 3, stride: 1, pad: 1), 64),
    // More tiles per image (255) than a chunk's target: one image per chunk.
    (ConvGeometry(n: 3, c: 16, h: 33, w: 29, kh: 3, kw: 3, stride: 1, pad: 1), 16),
    // Maps at most 8 wide, two tile rows per 8-lane group: ODE-Net's 6×6 on MNIST (an odd
    // number of tile rows), a full 4-tile row, a 1-tile row.
    (ConvGeometry(n: 7, c: 64, h: 6, w: 6, kh: 3, kw: 3, stride: 1, pad: 1), 64),
    (ConvGeometry(n: 2, c: 16, h: 7, w: 8, kh: 3, kw: 3, stride: 1, pad: 1), 18),
    (ConvGeometry(n: 3, c: 16, h: 8, w: 2, kh: 3, kw: 3, stride: 1, pad: 1), 16),
    // F(4×4, 3×3) (16 images and more): a full group and a partial one (16 + 7), two chunks of
    // 10 on a CIFAR ResNet's last stage, 9 blocks of one tile row (8 tiles of 4), rows of 12
    // tiles, and of 17 tiles (two 16-column segments and a third; 16 + 1 images).
    (ConvGeometry(n: 23, c: 17, h: 11, w: 19, kh: 3, kw: 3, stride: 1, pad: 1), 23),
    (ConvGeometry(n: 20, c: 32, h: 7, w: 7, kh: 3, kw: 3, stride: 1, pad: 1), 32),
    (ConvGeometry(n: 18, c: 16, h: 33, w: 29, kh: 3, kw: 3, stride: 1, pad: 1), 16),
    (ConvGeometry(n: 16, c: 16, h: 9, w: 45, kh: 3, kw: 3, stride: 1, pad: 1), 17),
    (ConvGeometry(n: 17, c: 18, h: 6, w: 66, kh: 3, kw: 3, stride: 1, pad: 1), 16),
  ]

  func backend() throws -> CPUBackend {
    let b = CPUBackend()
    guard b.usesWinograd else { throw XCTSkip("this CPU lacks AVX2 or FMA: no Winograd path") }
    return b
  }

  /// Every micro-kernel this CPU runs: the AVX-512 one where it has AVX-512, and the AVX2 one.
  func backends() throws -> [CPUBackend] {
    let b = try backend()
    return b.usesAVX512 ? [b, CPUBackend(avx512: false)] : [b]
  }

  /// Calls `visit(y, w, x)` with the flat indices of every product w[o, c, i, j] ·
  /// x[n, c, oh − p + i, ow − p + j] that contributes to y[n, o, oh, ow]: the direct convolution
  /// and, read the other ways round, both of its gradients.
  func forEachProduct(_ g: ConvGeometry, _ o: Int, _ visit: (Int, Int, Int) -> Void) {
    for n in 0..<g.n {
      for oc in 0..<o {
        for oh in 0..<g.outH {
          for ow in 0..<g.outW {
            let y = ((n * o + oc) * g.outH + oh) * g.outW + ow
            for c in 0..<g.c {
              for i in 0..<3 {
                for j in 0..<3 {
                  let (r, q) = (oh - g.pad + i, ow - g.pad + j)
                  guard r >= 0, r < g.h, q >= 0, q < g.w else { continue }
                  visit(y, ((oc * g.c + c) * 3 + i) * 3 + j, ((n * g.c + c) * g.h + r) * g.w + q)
                }
              }
            }
          }
        }
      }
    }
  }

  /// For every case: fresh inputs in [−1, 1] of the sizes `inputs` gives, `op` into a
  /// NaN-poisoned output of `outputCount` floats, compared with the float64 `reference`.
  func checkEveryCase(
    _ what: String, inputs: (ConvGeometry, Int) -> [Int], outputCount: (ConvGeometry, Int) -> Int,
    _ op: (CPUBackend, [DeviceBuffer], DeviceBuffer, ConvGeometry, Int) throws -> Void,
    reference: ([[Double]], ConvGeometry, Int) -> [Double]
  ) throws {
    for b in try backends() {
      for (g, o) in Self.cases {
        XCTAssertTrue(b.winogradFits(g, outChannels: o, dtype: .float32), "\(g)")
        let values = inputs(g, o).map { random($0, -1...1, .float32) }
        let count = outputCount(g, o)
        let out = try poisoned(b, count, .float32)
        try op(b, try values.map { try upload(b, $0, .float32) }, out, g, o)
        assertClose(
          try download(b, out, count, .float32), reference(values, g, o), .float32,
          "Winograd \(what) \(g) → \(o) on \(b.name)")
      }
    }
  }

  func testForwardMatchesDirectFloat64() throws {
    try checkEveryCase(
      "conv2d", inputs: { g, o in [g.n * g.c * g.h * g.w, o * g.patch] },
      outputCount: { g, o in g.n * o * g.outH * g.outW },
      { b, ins, y, g, o in
        try b.conv2d(ins[0], ins[1], bias: nil, y, outChannels: o, g, dtype: .float32)
      },
      reference: { v, g, o in
        var y = [Double](repeating: 0, count: g.n * o * g.outH * g.outW)
        forEachProduct(g, o) { yi, wi, xi in y[yi] += v[1][wi] * v[0][xi] }
        return y
      })
  }

  func testBackwardDataMatchesDirectFloat64() throws {
    try checkEveryCase(
      "conv2d backward data", inputs: { g, o in [g.n * o * g.outH * g.outW, o * g.patch] },
      outputCount: { g, _ in g.n * g.c * g.h * g.w },
      { b, ins, dx, g, o in
        try b.conv2dBackwardData(ins[0], ins[1], dx, outChannels: o, g, dtype: .float32)
      },
      reference: { v, g, o in
        var dx = [Double](repeating: 0, count: g.n * g.c * g.h * g.w)
        forEachProduct(g, o) { yi, wi, xi in dx[xi] += v[1][wi] * v[0][yi] }
        return dx
      })
  }

  func testBackwardWeightsMatchesDirectFloat64() throws {
    try checkEveryCase(
      "conv2d backward weights",
      inputs: { g, o in [g.n * o * g.outH * g.outW, g.n * g.c * g.h * g.w] },
      outputCount: { g, o in o * g.patch },
      { b, ins, dw, g, o in
        try b.conv2dBackwardWeights(
          ins[0], ins[1], dw, bias: nil, outChannels: o, g, dtype: .float32)
      },
      reference: { v, g, o in
        var dw = [Double](repeating: 0, count: o * g.patch)
        forEachProduct(g, o) { yi, wi, xi in dw[wi] += v[0][yi] * v[1][xi] }
        return dw
      })
  }

  /// The gate: the shapes Winograd does not take stay on the direct lowerings.
  func testWinogradTakesOnlyItsShapes() throws {
    let b = try backend()
    let g = ConvGeometry(n: 2, c: 16, h: 8, w: 8, kh: 3, kw: 3, stride: 1, pad: 1)
    XCTAssertTrue(b.winogradFits(g, outChannels: 16, dtype: .float32))
    XCTAssertFalse(b.winogradFits(g, outChannels: 16, dtype: .float64))
    XCTAssertFalse(b.winogradFits(g, outChannels: 8, dtype: .float32))
    var strided = g
    strided.stride = 2
    XCTAssertFalse(b.winogradFits(strided, outChannels: 16, dtype: .float32))
    var wide = g
    wide.pad = 3
    XCTAssertFalse(b.winogradFits(wide, outChannels: 16, dtype: .float32))
    var five = g
    (five.kh, five.kw) = (5, 5)
    XCTAssertFalse(b.winogradFits(five, outChannels: 16, dtype: .float32))
    // 64×64 outputs are 1024 tiles, the most taken; 66×66 are 1089.
    var largest = g
    (largest.h, largest.w) = (64, 64)
    XCTAssertTrue(b.winogradFits(largest, outChannels: 16, dtype: .float32))
    var tooLarge = g
    (tooLarge.h, tooLarge.w) = (66, 66)
    XCTAssertFalse(b.winogradFits(tooLarge, outChannels: 16, dtype: .float32))
    XCTAssertFalse(CPUBackend(winograd: false).winogradFits(g, outChannels: 16, dtype: .float32))
  }

  /// F(4×4, 3×3) only with AVX-512, for 16 images or more, and where it saves a fifth of the
  /// products: not on 6×6 maps (4 tiles of 36 against 9 of 16) or 8×2 (2 of 36 against 4 of
  /// 16), on 7×7, 14×14 and 28×28.
  func testTheLargerTileOnlyWhereItSavesWork() throws {
    let b = try backend()
    let large = b.usesAVX512 ? 4 : 2
    for (side, tile) in [(6, 2), (7, large), (14, large), (28, large)] {
      XCTAssertEqual(
        b.winogradTile(images: 16, outHeight: side, outWidth: side), tile, "\(side)×\(side)")
    }
    XCTAssertEqual(b.winogradTile(images: 15, outHeight: 28, outWidth: 28), 2)
    XCTAssertEqual(b.winogradTile(images: 128, outHeight: 8, outWidth: 2), 2)
    XCTAssertEqual(
      CPUBackend(avx512: false).winogradTile(images: 128, outHeight: 28, outWidth: 28), 2)
  }
}

/// The C functions write only the memory their contracts give them: the output and the scratch
/// count they ask for. Each array is followed by a guard of sentinels that must survive, with
/// every micro-kernel the CPU runs and both the overwriting and the accumulating weight gradient.
/// (An overlong masked store past the last channel panel lands there, where the value tests
/// cannot see it: the sentinels are written over with zeros from padded lanes.)
final class CWinogradBoundsTests: XCTestCase {
  static let guardCount = 256
  static let sentinel: Float = 12345

  /// `count` floats of random values followed by the guard.
  func guarded(_ count: Int) -> [Float] {
    (0..<count).map { _ in Float.random(in: -1...1) }
      + [Float](repeating: Self.sentinel, count: Self.guardCount)
  }

  func assertGuardIntact(_ a: [Float], _ count: Int, _ what: String) {
    XCTAssertTrue(a[count...].allSatisfy { $0 == Self.sentinel }, "\(what) wrote past its end")
  }

  func testForwardAndWeightGradientStayInTheirArrays() throws {
    try XCTSkipUnless(diffeqnet_winograd_available() != 0, "this CPU lacks AVX2 or FMA")
    // (tile, wide): F(2×2, 3×3) with either micro-kernel, F(4×4, 3×3) with AVX-512.
    let variants: [(Int32, Int32)] =
      diffeqnet_winograd_wide_available() != 0 ? [(2, 0), (2, 1), (4, 1)] : [(2, 0)]
    // (images, channels, height, width, outChannels, pad): channel counts that end in partial
    // panels of 6 or 8 and of 16 or 32, tile counts that end in partial panels; for F(4×4, 3×3)
    // also a full and a partial group of 16 images and blocks of one 18-tile row.
    let cases: [(Int32, Int32, Int32, Int32, Int32, Int32)] = [
      (3, 17, 11, 19, 23, 1), (5, 24, 6, 3, 17, 2), (2, 16, 9, 12, 20, 0),
      (17, 16, 21, 70, 18, 1),
    ]
    for (tile, wide) in variants {
      for (n, c, h, w, o, pad) in cases {
        let what = "n \(n) c \(c) \(h)×\(w) o \(o) pad \(pad) tile \(tile) wide \(wide)"
        let (outH, outW) = (Int(h + 2 * pad - 2), Int(w + 2 * pad - 2))
        let x = guarded(Int(n * c * h * w))
        let dy = guarded(Int(n * o) * outH * outW)
        let weights = guarded(Int(o * c) * 9)
        var packed = guarded(diffeqnet_winograd_packed_kernel_count(o, c, tile, wide))
        let panels = diffeqnet_winograd_kernel_panels(o, wide)
        diffeqnet_winograd_pack_kernel(weights, o, c, 0, tile, wide, &packed, 0, panels)
        assertGuardIntact(packed, packed.count - Self.guardCount, "pack_kernel " + what)

        let scratchCount = diffeqnet_winograd_scratch_count(n, c, h, w, o, pad, tile)
        var scratch = guarded(scratchCount)
        var y = guarded(Int(n * o) * outH * outW)
        diffeqnet_winograd_forward(packed, nil, x, &y, n, c, h, w, o, pad, tile, wide, &scratch)
        assertGuardIntact(y, y.count - Self.guardCount, "forward output " + what)
        assertGuardIntact(scratch, scratchCount, "forward scratch " + what)

        let weightScratchCount = diffeqnet_winograd_weight_scratch_count(n, c, h, w, o, pad, tile)
        var weightScratch = guarded(weightScratchCount)
        let gradientCount = diffeqnet_winograd_weight_gradient_count(o, c, tile)
        var gradient = guarded(gradientCount)
        for accumulate: Int32 in [0, 1] {
          diffeqnet_winograd_weight_gradient(
            x, dy, n, c, h, w, o, pad, &gradient, accumulate, tile, wide, &weightScratch)
          assertGuardIntact(gradient, gradientCount, "weight gradient " + what)
          assertGuardIntact(weightScratch, weightScratchCount, "weight scratch " + what)
        }
      }
    }
  }
}
