import COpenCL
import Foundation

/// Convolutions as implicit GEMMs (`gemm.cl`'s `conv_forward`, `conv_backward_data`,
/// `conv_backward_weights`): the GEMM tiles gather their operand straight from the NCHW tensors
/// and write NCHW results, so a pass is one launch (two for a split weight gradient) and no
/// im2col matrix is materialised. The time channel of ODE-Net's ConcatConv2d is folded into the
/// gather. On a CPU device whose GEMM goes to OpenBLAS (`usesBLASForGEMM`), the lowered path
/// (im2col + BLAS) is faster, and is used instead.
extension OpenCLBackend {
  public func conv2d(
    _ x: DeviceBuffer, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    if usesBLASForGEMM {
      return try loweredConv2d(x, w, bias: bias, y, outChannels: o, g, dtype: dtype)
    }
    try implicitForward(x, time: nil, w, bias: bias, y, outChannels: o, g, dtype: dtype)
  }

  public func timeConcatConv2d(
    _ x: DeviceBuffer, time: Double, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    if usesBLASForGEMM {
      let input = try concatenatedTime(x, time: time, g, dtype: dtype)
      return try loweredConv2d(input, w, bias: bias, y, outChannels: o, g, dtype: dtype)
    }
    try implicitForward(x, time: time, w, bias: bias, y, outChannels: o, g, dtype: dtype)
  }

  public func conv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    if usesBLASForGEMM {
      return try loweredConv2dBackwardData(dy, w, dx, outChannels: o, g, dtype: dtype)
    }
    try implicitBackwardData(dy, w, dx, hasTime: false, outChannels: o, g, dtype: dtype)
  }

  public func timeConcatConv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    if usesBLASForGEMM {
      let full = try allocate(g.n * g.c * g.h * g.w, dtype)
      try loweredConv2dBackwardData(dy, w, full, outChannels: o, g, dtype: dtype)
      return try droppingTime(full, into: dx, g, dtype: dtype)
    }
    try implicitBackwardData(dy, w, dx, hasTime: true, outChannels: o, g, dtype: dtype)
  }

  public func conv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, _ dw: DeviceBuffer, bias dbias: DeviceBuffer?,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    if usesBLASForGEMM {
      try loweredConv2dBackwardWeights(dy, x, dw, outChannels: o, g, dtype: dtype)
      if let dbias {
        try convolutionBiasGradient(
          dy, dbias, n: g.n, channels: o, plane: g.outH * g.outW, dtype: dtype)
      }
      return
    }
    try implicitBackwardWeights(dy, x, time: nil, dw, bias: dbias, outChannels: o, g, dtype: dtype)
  }

  public func timeConcatConv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, time: Double, _ dw: DeviceBuffer,
    bias dbias: DeviceBuffer?, outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    if usesBLASForGEMM {
      let input = try concatenatedTime(x, time: time, g, dtype: dtype)
      return try conv2dBackwardWeights(dy, input, dw, bias: dbias, outChannels: o, g, dtype: dtype)
    }
    try implicitBackwardWeights(
      dy, x, time: time, dw, bias: dbias, outChannels: o, g, dtype: dtype)
  }

  // MARK: Launches

  /// The arguments every pass shares: the logical input's geometry and the output channels.
  private func geometryArguments(_ g: ConvGeometry, outChannels o: Int) -> InlineArray<
    11, KernelArg
  > {
    [
      .int(g.n), .int(g.c), .int(g.h), .int(g.w), .int(o), .int(g.kh), .int(g.kw),
      .int(g.stride), .int(g.pad), .int(g.outH), .int(g.outW),
    ]
  }

  /// The GEMM's grid for an m×n result: tiles of the compiled tiling, `splits` deep.
  private func grid(m: Int, n: Int, splits: Int = 1, _ dtype: DType) throws -> (
    global: InlineArray<3, Int>, local: InlineArray<3, Int>
  ) {
    guard let t = try configuration(.gemm, dtype).tiling else {
      preconditionFailure("gemm program resolved without tiling")
    }
    let tilesN = (n + t.ts - 1) / t.ts
    let tilesM = (m + t.ts - 1) / t.ts
    return (
      [tilesN * t.threadsPerDim, tilesM * t.threadsPerDim, splits],
      [t.threadsPerDim, t.threadsPerDim, 1]
    )
  }

  private func implicitForward(
    _ x: DeviceBuffer, time: Double?, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    try requireType(dtype)
    let (global, local) = try grid(m: o, n: g.columns, dtype)
    let s = geometryArguments(g, outChannels: o)
    try launch(
      .convForward, dtype,
      [
        .mem(x), .mem(w), .mem(bias ?? w), .int(bias == nil ? 0 : 1), .mem(y),
        .int(time == nil ? 0 : 1), .real(time ?? 0),
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10],
      ], global: global, local: local)
  }

  private func implicitBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, hasTime: Bool, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    try requireType(dtype)
    let channels = g.c - (hasTime ? 1 : 0)
    let (global, local) = try grid(m: channels, n: g.n * g.h * g.w, dtype)
    let s = geometryArguments(g, outChannels: o)
    try launch(
      .convBackwardData, dtype,
      [
        .mem(dy), .mem(w), .mem(dx), .int(hasTime ? 1 : 0),
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10],
      ], global: global, local: local)
  }

  /// The weight gradient's inner dimension (batch·Ho·Wo) is long and its result (O × C·kh·kw)
  /// small: with few tiles the product is split along k into enough slices to give every compute
  /// unit two work-groups, and the slices are summed by one reduction (two with a bias). The
  /// bias gradient Σ dy is one more column of the same product.
  private func implicitBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, time: Double?, _ dw: DeviceBuffer,
    bias dbias: DeviceBuffer?, outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    try requireType(dtype)
    guard let t = try configuration(.gemm, dtype).tiling else {
      preconditionFailure("gemm program resolved without tiling")
    }
    let (m, n, k) = (o, g.patch + (dbias == nil ? 0 : 1), g.columns)
    let splits =
      options.convWeightSplits
      ?? Self.weightGradientSplits(
        tiles: ((m + t.ts - 1) / t.ts) * ((n + t.ts - 1) / t.ts), k: k, tileDepth: t.tsk,
        computeUnits: device.computeUnits)
    // Each slice a whole number of k-slabs; the last may be shorter, or (rounding) empty.
    let slabs = (k + t.tsk - 1) / t.tsk
    let chunk = max(1, (slabs + splits - 1) / splits) * t.tsk
    let out = splits == 1 ? dw : try allocate(splits * m * g.patch, dtype)
    // The bias column's output: dbias, its per-slice partials, or (no bias) `out`, never written.
    let biasPartials: DeviceBuffer
    if let dbias {
      biasPartials = splits == 1 ? dbias : try allocate(splits * m, dtype)
    } else {
      biasPartials = out
    }
    let (global, local) = try grid(m: m, n: n, splits: splits, dtype)
    let s = geometryArguments(g, outChannels: o)
    try launch(
      .convBackwardWeights, dtype,
      [
        .mem(dy), .mem(x), .mem(out), .mem(biasPartials), .int(dbias == nil ? 0 : 1),
        .int(time == nil ? 0 : 1), .real(time ?? 0),
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], .int(chunk),
      ], global: global, local: local)
    if splits > 1 {
      try reduceSum(
        out, dw, shape: ReductionShape(outer: 1, n: splits, inner: m * g.patch), scale: 1,
        dtype: dtype)
      if let dbias {
        try reduceSum(
          biasPartials, dbias, shape: ReductionShape(outer: 1, n: splits, inner: m), scale: 1,
          dtype: dtype)
      }
    }
  }

  /// Slices of k for a weight gradient of `tiles` output tiles: enough for two work-groups per
  /// compute unit, at most 64, and none shorter than four k-slabs.
  package static func weightGradientSplits(tiles: Int, k: Int, tileDepth: Int, computeUnits: Int)
    -> Int
  {
    let wanted = (2 * computeUnits + tiles - 1) / max(1, tiles)
    let longest = max(1, k / (4 * tileDepth))
    return max(1, min(wanted, 64, longest))
  }
}
