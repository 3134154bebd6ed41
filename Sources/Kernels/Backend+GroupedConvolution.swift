/// The grouped convolution lowered as the dense one is (`Backend+Convolution.swift`): one im2col
/// of the whole batch, whose rows come in channel order, so group j's rows are one contiguous
/// block; then one batched GEMM, a batch entry per group, [O/G, C/G·kh·kw] × [C/G·kh·kw, N·Ho·Wo];
/// then the permutation to NCHW. Both backends run it over their own im2col, GEMM (OpenBLAS, or
/// one OpenCL launch for all groups) and permute primitives; the CPU backend keeps no
/// per-image variant for it yet (its dense convolutions have one).
extension Backend {
  public func groupedConv2d(
    _ x: DeviceBuffer, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels o: Int, groups: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    let (og, kg) = (o / groups, g.patch / groups)
    let cols = try allocate(g.patch * g.columns, dtype)
    try im2col(x, cols, g, dtype: dtype)
    let tmp = try allocate(o * g.columns, dtype)
    var s = GEMMShape(m: og, n: g.columns, k: kg, batch: groups)
    (s.strideA, s.strideB, s.strideC) = (og * kg, kg * g.columns, og * g.columns)
    try gemm(w, cols, tmp, s, dtype: dtype)
    try permute(
      tmp, y, PermuteShape(shape: [1, o, g.n, g.outH * g.outW], perm: [0, 2, 1, 3]), dtype: dtype)
    if let bias {
      try addChannelBias(bias, to: y, n: g.n, channels: o, plane: g.outH * g.outW, dtype: dtype)
    }
  }

  public func groupedConv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels o: Int, groups: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    let (og, kg) = (o / groups, g.patch / groups)
    let dy2 = try allocate(o * g.columns, dtype)
    try permute(
      dy, dy2, PermuteShape(shape: [1, g.n, o, g.outH * g.outW], perm: [0, 2, 1, 3]), dtype: dtype)
    let dcols = try allocate(g.patch * g.columns, dtype)
    var s = GEMMShape(m: kg, n: g.columns, k: og, transA: true, batch: groups)
    (s.strideA, s.strideB, s.strideC) = (og * kg, og * g.columns, kg * g.columns)
    try gemm(w, dy2, dcols, s, dtype: dtype)
    try col2im(dcols, dx, g, dtype: dtype)
  }

  public func groupedConv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, _ dw: DeviceBuffer, outChannels o: Int, groups: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    let (og, kg) = (o / groups, g.patch / groups)
    let dy2 = try allocate(o * g.columns, dtype)
    try permute(
      dy, dy2, PermuteShape(shape: [1, g.n, o, g.outH * g.outW], perm: [0, 2, 1, 3]), dtype: dtype)
    let cols = try allocate(g.patch * g.columns, dtype)
    try im2col(x, cols, g, dtype: dtype)
    var s = GEMMShape(m: og, n: kg, k: g.columns, transB: true, batch: groups)
    (s.strideA, s.strideB, s.strideC) = (og * g.columns, kg * g.columns, og * kg)
    try gemm(dy2, cols, dw, s, dtype: dtype)
  }
}
