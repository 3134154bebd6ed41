import Foundation
import Kernels
import NumericTestSupport
import XCTest

/// The OpenCL backend's convolutions as implicit GEMMs (`conv_forward`, `conv_backward_data`,
/// `conv_backward_weights` in gemm.cl), with and without ODE-Net's folded time channel, against
/// float64 loops over the logical input [t·1, x]: odd channel counts, strides, paddings, batch 1,
/// forced small tilings, and weight gradients split along k into 1, 3 and 7 slices (7 leaves
/// some slices empty at these sizes). Outputs are poisoned with NaN, so an unwritten element
/// fails.
final class ImplicitConvolutionTests: XCTestCase, KernelTestCase {
  var rng = SplitMix64(seed: 0)

  override func setUp() {
    super.setUp()
    rng = seedForTestName()
  }

  /// Logical geometries (c counts the time channel when there is one).
  static let cases = [
    ConvGeometry(n: 2, c: 3, h: 7, w: 5, kh: 3, kw: 3, stride: 1, pad: 1),
    ConvGeometry(n: 1, c: 5, h: 13, w: 11, kh: 3, kw: 3, stride: 2, pad: 1),
    ConvGeometry(n: 3, c: 2, h: 6, w: 6, kh: 1, kw: 1, stride: 1, pad: 0),
    ConvGeometry(n: 1, c: 4, h: 9, w: 7, kh: 5, kw: 3, stride: 3, pad: 2),
    ConvGeometry(n: 2, c: 17, h: 5, w: 5, kh: 3, kw: 3, stride: 1, pad: 0),
  ]

  func backends() throws -> [OpenCLBackend] {
    guard let first = OpenCLBackend.devices().first else {
      throw missing(.opencl, "no OpenCL device")
    }
    return try [
      OpenCLBackend.Options(blasOnCPUDevice: false),
      .init(blasOnCPUDevice: false, gemmTiling: .init(ts: 16, wpt: 2, tsk: 8), convWeightSplits: 3),
      .init(blasOnCPUDevice: false, gemmTiling: .init(ts: 4, wpt: 4, tsk: 4), convWeightSplits: 7),
    ].map { try OpenCLBackend(deviceIndex: first.index, options: $0) }
  }

  /// The logical input's element at (n, ch, y, z): t in channel 0 with a time channel.
  func input(
    _ x: [Double], _ g: ConvGeometry, time: Double?, _ n: Int, _ ch: Int, _ y: Int, _ z: Int
  )
    -> Double
  {
    guard y >= 0, y < g.h, z >= 0, z < g.w else { return 0 }
    guard let time else { return x[((n * g.c + ch) * g.h + y) * g.w + z] }
    return ch == 0 ? time : x[((n * (g.c - 1) + ch - 1) * g.h + y) * g.w + z]
  }

  func testImplicitConvolutionsMatchFloat64() throws {
    for b in try backends() {
      for t in b.supports(.float64) ? [DType.float32, .float64] : [.float32] {
        for g in Self.cases {
          for time in [nil, 0.375] as [Double?] where time == nil || g.c > 1 {
            try check(b, g, time: time, t)
          }
        }
      }
    }
  }

  func check(_ b: OpenCLBackend, _ g: ConvGeometry, time: Double?, _ t: DType) throws {
    let o = 5
    let xc = g.c - (time == nil ? 0 : 1)
    let (xCount, yCount, wCount) = (g.n * xc * g.h * g.w, g.n * o * g.outH * g.outW, o * g.patch)
    let (x, w, bias, dy) = (
      random(xCount, -1...1, t), random(wCount, -1...1, t), random(o, -1...1, t),
      random(yCount, -1...1, t)
    )
    var y = [Double](repeating: 0, count: yCount)
    var dx = [Double](repeating: 0, count: xCount)
    var dw = [Double](repeating: 0, count: wCount)
    var dbias = [Double](repeating: 0, count: o)
    for n in 0..<g.n {
      for f in 0..<o {
        for i in 0..<g.outH {
          for j in 0..<g.outW {
            let out = ((n * o + f) * g.outH + i) * g.outW + j
            y[out] = bias[f]
            dbias[f] += dy[out]
            for ch in 0..<g.c {
              for u in 0..<g.kh {
                for v in 0..<g.kw {
                  let (yy, zz) = (i * g.stride - g.pad + u, j * g.stride - g.pad + v)
                  let wi = ((f * g.c + ch) * g.kh + u) * g.kw + v
                  let xv = input(x, g, time: time, n, ch, yy, zz)
                  y[out] += w[wi] * xv
                  dw[wi] += dy[out] * xv
                  let xch = ch - (time == nil ? 0 : 1)
                  if xch >= 0, yy >= 0, yy < g.h, zz >= 0, zz < g.w {
                    dx[((n * xc + xch) * g.h + yy) * g.w + zz] += w[wi] * dy[out]
                  }
                }
              }
            }
          }
        }
      }
    }
    let what = "\(b.name) \(b.options) \(g) time \(String(describing: time))"
    let (xb, wb, biasb, dyb) = (
      try upload(b, x, t), try upload(b, w, t), try upload(b, bias, t), try upload(b, dy, t)
    )
    let yb = try poisoned(b, yCount, t)
    let dxb = try poisoned(b, xCount, t)
    let dwb = try poisoned(b, wCount, t)
    let dbiasb = try poisoned(b, o, t)
    if let time {
      try b.timeConcatConv2d(xb, time: time, wb, bias: biasb, yb, outChannels: o, g, dtype: t)
      try b.timeConcatConv2dBackwardData(dyb, wb, dxb, outChannels: o, g, dtype: t)
      try b.timeConcatConv2dBackwardWeights(
        dyb, xb, time: time, dwb, bias: dbiasb, outChannels: o, g, dtype: t)
    } else {
      try b.conv2d(xb, wb, bias: biasb, yb, outChannels: o, g, dtype: t)
      try b.conv2dBackwardData(dyb, wb, dxb, outChannels: o, g, dtype: t)
      try b.conv2dBackwardWeights(dyb, xb, dwb, bias: dbiasb, outChannels: o, g, dtype: t)
    }
    assertClose(try download(b, yb, yCount, t), y, t, "forward " + what)
    assertClose(try download(b, dxb, xCount, t), dx, t, "backward data " + what)
    assertClose(try download(b, dwb, wCount, t), dw, t, "backward weights " + what)
    assertClose(try download(b, dbiasb, o, t), dbias, t, "backward bias " + what)
  }

  /// One launch per pass, plus a reduction per gradient when the weight gradient is split: what
  /// replaces the lowered path's fill, concatenation, im2col, GEMM, permute, bias and its sums.
  func testEachPassIsOneLaunch() throws {
    let b = try backends()[1]  // three weight slices
    let g = ConvGeometry(n: 2, c: 9, h: 14, w: 14, kh: 3, kw: 3, stride: 1, pad: 1)
    let t = DType.float32
    let x = try upload(b, random(g.n * (g.c - 1) * g.h * g.w, -1...1, t), t)
    let w = try upload(b, random(8 * g.patch, -1...1, t), t)
    let y = try b.allocate(g.n * 8 * g.outH * g.outW, t)
    let dx = try b.allocate(g.n * (g.c - 1) * g.h * g.w, t)
    let dw = try b.allocate(8 * g.patch, t)
    try b.synchronize()
    var before = b.traffic
    try b.timeConcatConv2d(x, time: 0.5, w, bias: w, y, outChannels: 8, g, dtype: t)
    XCTAssertEqual((b.traffic - before).launches, 1)
    before = b.traffic
    try b.timeConcatConv2dBackwardData(y, w, dx, outChannels: 8, g, dtype: t)
    XCTAssertEqual((b.traffic - before).launches, 1)
    before = b.traffic
    try b.timeConcatConv2dBackwardWeights(
      y, x, time: 0.5, dw, bias: nil, outChannels: 8, g, dtype: t)
    XCTAssertEqual((b.traffic - before).launches, 2)
    before = b.traffic
    try b.timeConcatConv2dBackwardWeights(
      y, x, time: 0.5, dw, bias: dx, outChannels: 8, g, dtype: t)
    XCTAssertEqual((b.traffic - before).launches, 3)
    let unsplit = try OpenCLBackend(
      deviceIndex: b.device.index, options: .init(blasOnCPUDevice: false, convWeightSplits: 1))
    let x1 = try unsplit.allocate(g.n * (g.c - 1) * g.h * g.w, t)
    let y1 = try unsplit.allocate(g.n * 8 * g.outH * g.outW, t)
    let (w1, b1) = (try unsplit.allocate(8 * g.patch, t), try unsplit.allocate(8, t))
    before = unsplit.traffic
    try unsplit.timeConcatConv2dBackwardWeights(
      y1, x1, time: 0.5, w1, bias: b1, outChannels: 8, g, dtype: t)
    XCTAssertEqual((unsplit.traffic - before).launches, 1, "weights and bias in one launch")
  }

  func testWeightGradientSplitsFillTheDevice() {
    // A 64 × 585 result in 64-wide tiles is 10 tiles: 27 slices give 132 compute units two
    // work-groups each; a short k allows fewer; a device the tiles already fill gets one.
    XCTAssertEqual(
      OpenCLBackend.weightGradientSplits(tiles: 10, k: 12544, tileDepth: 16, computeUnits: 132),
      27)
    XCTAssertEqual(
      OpenCLBackend.weightGradientSplits(tiles: 10, k: 128, tileDepth: 16, computeUnits: 132), 2)
    XCTAssertEqual(
      OpenCLBackend.weightGradientSplits(tiles: 10, k: 12544, tileDepth: 16, computeUnits: 2), 1)
  }
}
