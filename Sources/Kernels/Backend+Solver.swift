/// Unfused fallbacks for the solver primitives, composed of the element-wise ones: correct on any
/// backend, at the cost of extra launches and memory traffic. Backends override them with single
/// kernels.
extension Backend {
  public var traffic: DeviceTraffic { DeviceTraffic() }

  public func linearCombination(
    _ xs: [DeviceBuffer], coefficients: [Double], into y: DeviceBuffer, count: Int, dtype: DType
  ) throws {
    precondition(xs.count == coefficients.count && !xs.isEmpty)
    try affine(xs[0], y, scale: coefficients[0], shift: 0, count: count, dtype: dtype)
    let term = try allocate(count, dtype)
    let layout = BroadcastLayout(
      shape: [1, 1, 1, count], aStrides: [0, 0, 0, 1], bStrides: [0, 0, 0, 1])
    for (x, c) in zip(xs.dropFirst(), coefficients.dropFirst()) {
      try affine(x, term, scale: c, shift: 0, count: count, dtype: dtype)
      try binary(.add, y, term, y, layout: layout, dtype: dtype)
    }
  }

  public func scaledErrorSquaredSums(
    _ terms: [ScaledErrorTerm], atol: Double, rtol: Double, dtype: DType
  ) throws -> [Double] {
    try terms.map {
      try scaledErrorSquaredSum(
        error: $0.error, y0: $0.y0, y1: $0.y1, atol: atol, rtol: rtol, count: $0.count,
        dtype: dtype)
    }
  }

  public func scaledErrorSquaredSum(
    error: DeviceBuffer, y0: DeviceBuffer, y1: DeviceBuffer, atol: Double, rtol: Double,
    count: Int, dtype: DType
  ) throws -> Double {
    let layout = BroadcastLayout(
      shape: [1, 1, 1, count], aStrides: [0, 0, 0, 1], bStrides: [0, 0, 0, 1])
    let a = try allocate(count, dtype)
    let b = try allocate(count, dtype)
    try unary(.abs, y0, a, count: count, dtype: dtype)
    try unary(.abs, y1, b, count: count, dtype: dtype)
    try binary(.maximum, a, b, a, layout: layout, dtype: dtype)
    try affine(a, a, scale: rtol, shift: atol, count: count, dtype: dtype)
    try binary(.div, error, a, b, layout: layout, dtype: dtype)
    try unary(.square, b, a, count: count, dtype: dtype)
    let sum = try allocate(1, dtype)
    try reduceSum(
      a, sum, shape: ReductionShape(outer: 1, n: count, inner: 1), scale: 1, dtype: dtype)
    switch dtype {
    case .float32:
      var v: Float = 0
      try withUnsafeMutableBytes(of: &v) { try read(sum, into: $0) }
      return Double(v)
    case .float64:
      var v: Double = 0
      try withUnsafeMutableBytes(of: &v) { try read(sum, into: $0) }
      return v
    }
  }
}
