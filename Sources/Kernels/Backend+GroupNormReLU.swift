/// Group norm followed by ReLU, composed: the norm, then the point-wise ReLU (forward), and the
/// ReLU's gradient, then the norm's (backward). Backends that can apply the ReLU inside the
/// norm's own passes (OpenCL) override both.
extension Backend {
  public func groupNormReLU(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, rstd: DeviceBuffer, _ s: GroupNormShape, dtype: DType
  ) throws {
    try groupNorm(x: x, gamma: gamma, beta: beta, y: y, mean: mean, rstd: rstd, s, dtype: dtype)
    try unary(.relu, y, y, count: s.count, dtype: dtype)
  }

  public func groupNormReLUGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer,
    y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, _ s: GroupNormShape, dtype: DType
  ) throws {
    // relu'(y) = [y > 0] = relu'(pre): y is positive exactly where the norm's output was.
    let masked = try allocate(s.count, dtype)
    try unaryGrad(.relu, x: y, dy: dy, dx: masked, count: s.count, dtype: dtype)
    try groupNormGrad(
      x: x, gamma: gamma, mean: mean, rstd: rstd, dy: masked, dx: dx, dgamma: dgamma,
      dbeta: dbeta, s, dtype: dtype)
  }
}
