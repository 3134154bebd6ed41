import Kernels
import XCTest

/// The CPU backend's Winograd F(2×2, 3×3) convolutions (forward, backward data as the
/// rotated-kernel convolution, backward weights) against float64 direct loops, on fresh random inputs, NaN-poisoned
/// outputs, within the float32 tolerance of `KernelTestCase` (1e-5 relative).
final class CPUWinogradTests: XCTestCase, KernelTestCase {
  var rng = SplitMix64(seed: 0)
  override func setUp() { rng = seedForTestName() }

  /// (geometry, output channels): odd and even sizes (partial tiles in either axis), a 1×1 map,
  /// every padding the path takes, the ODE-Net shapes (with the time channel), and batches that
  /// split into several chunks and leave a tile row spilling into the next image.
  static let cases: [(ConvGeometry, Int)] = [
    (ConvGeometry(n: 3, c: 16, h: 7, w: 5, kh: 3, kw: 3, stride: 1, pad: 1), 17),
    (ConvGeometry(n: 1, c: 19, h: 1, w: 1, kh: 3, kw: 3, stride: 1, pad: 1), 16),
    (ConvGeometry(n: 2, c: 16, h: 9, w: 12, kh: 3, kw: 3, stride: 1, pad: 0), 20),
    (ConvGeometry(n: 5, c: 24, h: 6, w: 3, kh: 3, kw: 3, stride: 1, pad: 2), 16),
    (ConvGeometry(n: 2, c: 65, h: 14, w: 14, kh: 3, kw: 3, stride: 1, pad: 1), 64),
    (ConvGeometry(n: 23, c: 17, h: 11, w: 19, kh: 3, kw: 3, stride: 1, pad: 1), 23),
    // More tiles per image (255) than a chunk's target: one image per chunk.
    (ConvGeometry(n: 3, c: 16, h: 33, w: 29, kh: 3, kw: 3, stride: 1, pad: 1), 16),
    // Maps at most 8 wide, two tile rows per 8-lane group: ODE-Net's 6×6 on MNIST (an odd
    // number of tile rows), a full 4-tile row, a 1-tile row.
    (ConvGeometry(n: 7, c: 64, h: 6, w: 6, kh: 3, kw: 3, stride: 1, pad: 1), 64),
    (ConvGeometry(n: 2, c: 16, h: 7, w: 8, kh: 3, kw: 3, stride: 1, pad: 1), 18),
    (ConvGeometry(n: 3, c: 16, h: 8, w: 2, kh: 3, kw: 3, stride: 1, pad: 1), 16),
  ]

  func backend() throws -> CPUBackend {
    let b = CPUBackend()
    guard b.usesWinograd else { throw XCTSkip("this CPU lacks AVX2 or FMA: no Winograd path") }
    return b
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
    let b = try backend()
    for (g, o) in Self.cases {
      XCTAssertTrue(b.winogradFits(g, outChannels: o, dtype: .float32), "\(g)")
      let values = inputs(g, o).map { random($0, -1...1, .float32) }
      let count = outputCount(g, o)
      let out = try poisoned(b, count, .float32)
      try op(b, try values.map { try upload(b, $0, .float32) }, out, g, o)
      assertClose(
        try download(b, out, count, .float32), reference(values, g, o), .float32,
        "Winograd \(what) \(g) → \(o)")
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
        try b.conv2dBackwardWeights(ins[0], ins[1], dw, outChannels: o, g, dtype: .float32)
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
}
