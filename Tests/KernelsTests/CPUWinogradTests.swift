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

  /// y[n, o, oh, ow] = Σ w[o, c, i, j] x[n, c, oh − p + i, ow − p + j] in float64.
  func referenceConv(_ x: [Double], _ w: [Double], _ g: ConvGeometry, _ o: Int) -> [Double] {
    var y = [Double](repeating: 0, count: g.n * o * g.outH * g.outW)
    for n in 0..<g.n {
      for oc in 0..<o {
        for oh in 0..<g.outH {
          for ow in 0..<g.outW {
            var s = 0.0
            for c in 0..<g.c {
              for i in 0..<3 {
                for j in 0..<3 {
                  let (r, q) = (oh - g.pad + i, ow - g.pad + j)
                  guard r >= 0, r < g.h, q >= 0, q < g.w else { continue }
                  s += w[((oc * g.c + c) * 3 + i) * 3 + j] * x[((n * g.c + c) * g.h + r) * g.w + q]
                }
              }
            }
            y[((n * o + oc) * g.outH + oh) * g.outW + ow] = s
          }
        }
      }
    }
    return y
  }

  /// dx = the adjoint of the convolution applied to dy, by scattering every product back.
  func referenceBackwardData(_ dy: [Double], _ w: [Double], _ g: ConvGeometry, _ o: Int)
    -> [Double]
  {
    var dx = [Double](repeating: 0, count: g.n * g.c * g.h * g.w)
    for n in 0..<g.n {
      for oc in 0..<o {
        for oh in 0..<g.outH {
          for ow in 0..<g.outW {
            let d = dy[((n * o + oc) * g.outH + oh) * g.outW + ow]
            for c in 0..<g.c {
              for i in 0..<3 {
                for j in 0..<3 {
                  let (r, q) = (oh - g.pad + i, ow - g.pad + j)
                  guard r >= 0, r < g.h, q >= 0, q < g.w else { continue }
                  dx[((n * g.c + c) * g.h + r) * g.w + q] += w[((oc * g.c + c) * 3 + i) * 3 + j] * d
                }
              }
            }
          }
        }
      }
    }
    return dx
  }

  func testForwardMatchesDirectFloat64() throws {
    let b = try backend()
    for (g, o) in Self.cases {
      XCTAssertTrue(b.winogradFits(g, outChannels: o, dtype: .float32), "\(g)")
      let x = random(g.n * g.c * g.h * g.w, -1...1, .float32)
      let w = random(o * g.patch, -1...1, .float32)
      let count = g.n * o * g.outH * g.outW
      let y = try poisoned(b, count, .float32)
      try b.conv2d(
        try upload(b, x, .float32), try upload(b, w, .float32), y, outChannels: o, g,
        dtype: .float32)
      assertClose(
        try download(b, y, count, .float32), referenceConv(x, w, g, o), .float32,
        "Winograd conv2d \(g) → \(o)")
    }
  }

  func testBackwardDataMatchesDirectFloat64() throws {
    let b = try backend()
    for (g, o) in Self.cases {
      let dy = random(g.n * o * g.outH * g.outW, -1...1, .float32)
      let w = random(o * g.patch, -1...1, .float32)
      let count = g.n * g.c * g.h * g.w
      let dx = try poisoned(b, count, .float32)
      try b.conv2dBackwardData(
        try upload(b, dy, .float32), try upload(b, w, .float32), dx, outChannels: o, g,
        dtype: .float32)
      assertClose(
        try download(b, dx, count, .float32), referenceBackwardData(dy, w, g, o), .float32,
        "Winograd conv2d backward data \(g) → \(o)")
    }
  }

  func testBackwardWeightsMatchesDirectFloat64() throws {
    let b = try backend()
    for (g, o) in Self.cases {
      let dy = random(g.n * o * g.outH * g.outW, -1...1, .float32)
      let x = random(g.n * g.c * g.h * g.w, -1...1, .float32)
      var ref = [Double](repeating: 0, count: o * g.patch)
      for n in 0..<g.n {
        for oc in 0..<o {
          for oh in 0..<g.outH {
            for ow in 0..<g.outW {
              let d = dy[((n * o + oc) * g.outH + oh) * g.outW + ow]
              for c in 0..<g.c {
                for i in 0..<3 {
                  for j in 0..<3 {
                    let (r, q) = (oh - g.pad + i, ow - g.pad + j)
                    guard r >= 0, r < g.h, q >= 0, q < g.w else { continue }
                    ref[((oc * g.c + c) * 3 + i) * 3 + j] +=
                      d * x[((n * g.c + c) * g.h + r) * g.w + q]
                  }
                }
              }
            }
          }
        }
      }
      let dw = try poisoned(b, o * g.patch, .float32)
      try b.conv2dBackwardWeights(
        try upload(b, dy, .float32), try upload(b, x, .float32), dw, outChannels: o, g,
        dtype: .float32)
      assertClose(
        try download(b, dw, o * g.patch, .float32), ref, .float32,
        "Winograd conv2d backward weights \(g) → \(o)")
    }
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
    XCTAssertFalse(CPUBackend(winograd: false).winogradFits(g, outChannels: 16, dtype: .float32))
  }
}
