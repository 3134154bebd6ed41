/// Convolution lowered to im2col and one GEMM over the whole batch — the right shape for a GPU,
/// where one large GEMM fills the device. [O, C·kh·kw] × [C·kh·kw, N·Ho·Wo] gives [O, N, Ho·Wo],
/// permuted to NCHW. Backends with a better strategy (the CPU backend works image by image in
/// cache) provide their own.
extension Backend {
  public func conv2d(
    _ x: DeviceBuffer, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    try loweredConv2d(x, w, bias: bias, y, outChannels: o, g, dtype: dtype)
  }

  /// `conv2d` as im2col, one GEMM, a permute and the bias: the default, and what a backend
  /// whose GEMM is best on a materialised matrix (OpenBLAS on an OpenCL CPU device) calls.
  public func loweredConv2d(
    _ x: DeviceBuffer, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    let cols = try allocate(g.patch * g.columns, dtype)
    try im2col(x, cols, g, dtype: dtype)
    let tmp = try allocate(o * g.columns, dtype)
    try gemm(w, cols, tmp, GEMMShape(m: o, n: g.columns, k: g.patch), dtype: dtype)
    try permute(
      tmp, y, PermuteShape(shape: [1, o, g.n, g.outH * g.outW], perm: [0, 2, 1, 3]), dtype: dtype)
    if let bias {
      try addChannelBias(bias, to: y, n: g.n, channels: o, plane: g.outH * g.outW, dtype: dtype)
    }
  }

  /// y[n, o, ·] += bias[o] in place, by the broadcasting `binary` add (whose output may be its
  /// first operand: every element reads only its own position).
  public func addChannelBias(
    _ bias: DeviceBuffer, to y: DeviceBuffer, n: Int, channels: Int, plane: Int, dtype: DType
  ) throws {
    // The plane innermost: rows of `plane` elements plus one bias value each, which the CPU
    // backend runs as a tight loop (a unit innermost axis made every element a row of its own).
    let layout = BroadcastLayout(
      shape: SIMD4(1, n, channels, plane), aStrides: SIMD4(0, channels * plane, plane, 1),
      bStrides: SIMD4(0, 0, 1, 0))
    try binary(.add, y, bias, y, layout: layout, dtype: dtype)
  }

  public func conv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    try loweredConv2dBackwardData(dy, w, dx, outChannels: o, g, dtype: dtype)
  }

  /// `conv2dBackwardData` as a permute, one GEMM and col2im.
  public func loweredConv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    let dy2 = try allocate(o * g.columns, dtype)
    try permute(
      dy, dy2, PermuteShape(shape: [1, g.n, o, g.outH * g.outW], perm: [0, 2, 1, 3]), dtype: dtype)
    let dcols = try allocate(g.patch * g.columns, dtype)
    try gemm(w, dy2, dcols, GEMMShape(m: g.patch, n: g.columns, k: o, transA: true), dtype: dtype)
    try col2im(dcols, dx, g, dtype: dtype)
  }

  public func conv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, _ dw: DeviceBuffer, bias dbias: DeviceBuffer?,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    try loweredConv2dBackwardWeights(dy, x, dw, outChannels: o, g, dtype: dtype)
    if let dbias {
      try convolutionBiasGradient(
        dy, dbias, n: g.n, channels: o, plane: g.outH * g.outW, dtype: dtype)
    }
  }

  /// dbias[o] (overwritten) = Σ_{n, p} dy[n, o, p] for dy [N, O, P]: a convolution's bias
  /// gradient, as two reductions.
  public func convolutionBiasGradient(
    _ dy: DeviceBuffer, _ dbias: DeviceBuffer, n: Int, channels: Int, plane: Int, dtype: DType
  ) throws {
    let perImage = try allocate(n * channels, dtype)
    try reduceSum(
      dy, perImage, shape: ReductionShape(outer: n * channels, n: plane, inner: 1), scale: 1,
      dtype: dtype)
    try reduceSum(
      perImage, dbias, shape: ReductionShape(outer: 1, n: n, inner: channels), scale: 1,
      dtype: dtype)
  }

  /// `conv2dBackwardWeights` as a permute, im2col and one GEMM.
  public func loweredConv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, _ dw: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    let dy2 = try allocate(o * g.columns, dtype)
    try permute(
      dy, dy2, PermuteShape(shape: [1, g.n, o, g.outH * g.outW], perm: [0, 2, 1, 3]), dtype: dtype)
    let cols = try allocate(g.patch * g.columns, dtype)
    try im2col(x, cols, g, dtype: dtype)
    try gemm(dy2, cols, dw, GEMMShape(m: o, n: g.patch, k: g.columns, transB: true), dtype: dtype)
  }

  // MARK: The time channel, materialised

  /// [t·1, x] [N, C, H, W] for `g.c` = C: a fill and one strided copy.
  public func concatenatedTime(_ x: DeviceBuffer, time: Double, _ g: ConvGeometry, dtype: DType)
    throws -> DeviceBuffer
  {
    let plane = g.h * g.w
    let input = try allocate(g.n * g.c * plane, dtype)
    try fill(input, value: time, count: g.n * g.c * plane, dtype: dtype)
    try copyBlocks(
      x, input,
      BlockCopy(
        blocks: g.n, length: (g.c - 1) * plane, srcOffset: 0, srcStride: (g.c - 1) * plane,
        dstOffset: plane, dstStride: g.c * plane), dtype: dtype)
    return input
  }

  public func timeConcatConv2d(
    _ x: DeviceBuffer, time: Double, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    let input = try concatenatedTime(x, time: time, g, dtype: dtype)
    try conv2d(input, w, bias: bias, y, outChannels: o, g, dtype: dtype)
  }

  public func timeConcatConv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    let full = try allocate(g.n * g.c * g.h * g.w, dtype)
    try conv2dBackwardData(dy, w, full, outChannels: o, g, dtype: dtype)
    try droppingTime(full, into: dx, g, dtype: dtype)
  }

  /// dx [N, C − 1, H, W] = full [N, C, H, W] without its first (time) channel: the inverse of
  /// `concatenatedTime`, one strided copy.
  public func droppingTime(
    _ full: DeviceBuffer, into dx: DeviceBuffer, _ g: ConvGeometry, dtype: DType
  ) throws {
    let plane = g.h * g.w
    try copyBlocks(
      full, dx,
      BlockCopy(
        blocks: g.n, length: (g.c - 1) * plane, srcOffset: plane, srcStride: g.c * plane,
        dstOffset: 0, dstStride: (g.c - 1) * plane), dtype: dtype)
  }

  public func timeConcatConv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, time: Double, _ dw: DeviceBuffer,
    bias dbias: DeviceBuffer?, outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    let input = try concatenatedTime(x, time: time, g, dtype: dtype)
    try conv2dBackwardWeights(dy, input, dw, bias: dbias, outChannels: o, g, dtype: dtype)
  }
}
