/// Batch norm followed by ReLU, composed: the norm, then the point-wise ReLU (forward), and the
/// ReLU's gradient, then the norm's (backward). The CPU and OpenCL backends apply the ReLU
/// inside the norm's own passes instead.
extension Backend {
  public func batchNormReLU(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, variance: DeviceBuffer, running: BatchNormRunning?,
    _ s: BatchNormShape, dtype: DType
  ) throws {
    try batchNorm(
      x: x, gamma: gamma, beta: beta, y: y, mean: mean, variance: variance, running: running, s,
      dtype: dtype)
    try unary(.relu, y, y, count: s.count, dtype: dtype)
  }

  public func batchNormReLUGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, variance: DeviceBuffer,
    y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, _ s: BatchNormShape, dtype: DType
  ) throws {
    // relu'(y) = [y > 0] = relu'(pre): y is positive exactly where the norm's output was.
    let masked = try allocate(s.count, dtype)
    try unaryGrad(.relu, x: y, dy: dy, dx: masked, count: s.count, dtype: dtype)
    try batchNormGrad(
      x: x, gamma: gamma, mean: mean, variance: variance, dy: masked, dx: dx, dgamma: dgamma,
      dbeta: dbeta, batchStatistics: true, s, dtype: dtype)
  }
}
