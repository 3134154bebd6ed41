import COpenCL
import Foundation

/// Batch normalisation (`kernels/norm.cl`): one launch for a training-mode forward (statistics,
/// output and running averages), one for evaluation, one for the gradients; a ReLU after the
/// norm is a flag of the same launches.
extension OpenCLBackend {
  public func batchNorm(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, variance: DeviceBuffer, running: BatchNormRunning?,
    _ s: BatchNormShape, dtype: DType
  ) throws {
    try batchNormTraining(
      x: x, gamma: gamma, beta: beta, y: y, mean: mean, variance: variance, running: running, s,
      relu: false, dtype: dtype)
  }

  public func batchNormReLU(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, variance: DeviceBuffer, running: BatchNormRunning?,
    _ s: BatchNormShape, dtype: DType
  ) throws {
    try batchNormTraining(
      x: x, gamma: gamma, beta: beta, y: y, mean: mean, variance: variance, running: running, s,
      relu: true, dtype: dtype)
  }

  private func batchNormTraining(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, variance: DeviceBuffer, running: BatchNormRunning?,
    _ s: BatchNormShape, relu: Bool, dtype: DType
  ) throws {
    let wg = try configuration(.norm, dtype).workGroup
    // Without running statistics their slots are bound to `mean` and never touched.
    let r = running
    try launch(
      .batchNormTrain, dtype,
      [
        .mem(x), .mem(gamma), .mem(beta), .mem(y), .mem(mean), .mem(variance),
        .mem(r?.mean ?? mean), .mem(r?.variance ?? mean), .mem(r?.newMean ?? mean),
        .mem(r?.newVariance ?? mean), .int(s.n), .int(s.c), .int(s.hw), .real(s.eps),
        .real(r?.momentum ?? 0), .int(r == nil ? 0 : 1), .int(relu ? 1 : 0),
      ], global: [s.c * wg], local: [wg])
  }

  public func batchNormInference(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, mean: DeviceBuffer,
    variance: DeviceBuffer, y: DeviceBuffer, _ s: BatchNormShape, dtype: DType
  ) throws {
    try launch(
      .batchNormApply, dtype,
      [
        .mem(x), .mem(gamma), .mem(beta), .mem(mean), .mem(variance), .mem(y), .int(s.c),
        .int(s.hw), .int(s.count), .real(s.eps),
      ], global: [s.count])
  }

  public func batchNormGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, variance: DeviceBuffer,
    dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer, dbeta: DeviceBuffer,
    batchStatistics: Bool, _ s: BatchNormShape, dtype: DType
  ) throws {
    try batchNormGradient(
      x: x, gamma: gamma, mean: mean, variance: variance, reluOutput: nil, dy: dy, dx: dx,
      dgamma: dgamma, dbeta: dbeta, batchStatistics: batchStatistics, s, dtype: dtype)
  }

  public func batchNormReLUGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, variance: DeviceBuffer,
    y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, _ s: BatchNormShape, dtype: DType
  ) throws {
    try batchNormGradient(
      x: x, gamma: gamma, mean: mean, variance: variance, reluOutput: y, dy: dy, dx: dx,
      dgamma: dgamma, dbeta: dbeta, batchStatistics: true, s, dtype: dtype)
  }

  private func batchNormGradient(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, variance: DeviceBuffer,
    reluOutput: DeviceBuffer?, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, batchStatistics: Bool, _ s: BatchNormShape, dtype: DType
  ) throws {
    let wg = try configuration(.norm, dtype).workGroup
    // Without the ReLU its output's slot is bound to dy and never read.
    try launch(
      .batchNormGrad, dtype,
      [
        .mem(x), .mem(gamma), .mem(mean), .mem(variance), .mem(reluOutput ?? dy), .mem(dy),
        .mem(dx), .mem(dgamma), .mem(dbeta), .int(s.n), .int(s.c), .int(s.hw), .real(s.eps),
        .int(batchStatistics ? 1 : 0), .int(reluOutput == nil ? 0 : 1),
      ], global: [s.c * wg], local: [wg])
  }
}
