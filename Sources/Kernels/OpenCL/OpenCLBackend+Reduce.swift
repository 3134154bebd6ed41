import COpenCL
import Foundation

/// Reductions and the operations built on them: sums, group normalisation, softmax cross-entropy.
extension OpenCLBackend {
  /// A contiguous reduced axis (inner == 1) longer than a few elements gets a work-group per row
  /// with a local-memory tree; otherwise one work-item per output element loops over the axis.
  /// When there are fewer rows than the device has compute units to fill and the rows are long
  /// (a loss's mean over a whole batch), each row is first split into parts summed by separate
  /// work-groups, then the parts are summed.
  ///
  /// Limitation: a long reduction with a short non-contiguous output (inner > 1, outer·inner
  /// small) still has only outer·inner work-items.
  public func reduceSum(
    _ x: DeviceBuffer, _ y: DeviceBuffer, shape: ReductionShape, scale: Double, dtype: DType
  ) throws {
    if shape.inner == 1 && shape.n > 32 {
      let wg = try configuration(.reduce, dtype).workGroup
      let parts = Self.rowParts(
        rows: shape.outer, n: shape.n, workGroup: wg, computeUnits: device.computeUnits)
      if parts > 1 {
        let partial = try allocate(shape.outer * parts, dtype)
        try launch(
          .reduceRowParts, dtype,
          [.mem(x), .mem(partial), .int(shape.n), .int(parts)],
          global: [shape.outer * parts * wg], local: [wg])
        try reduceSum(
          partial, y, shape: ReductionShape(outer: shape.outer, n: parts, inner: 1), scale: scale,
          dtype: dtype)
        return
      }
      try launch(
        .reduceRows, dtype, [.mem(x), .mem(y), .int(shape.n), .real(scale)],
        global: [shape.outer * wg], local: [wg])
    } else {
      let count = shape.outer * shape.inner
      try launch(
        .reduceCols, dtype,
        [.mem(x), .mem(y), .int(shape.n), .int(shape.inner), .real(scale), .int(count)],
        global: [count])
    }
  }

  /// How many parts to split each of `rows` rows of length n into: enough work-groups for about
  /// four per compute unit, each summing at least 8 elements per work-item; 1 when the rows
  /// already fill the device or are too short to repay a second launch.
  static func rowParts(rows: Int, n: Int, workGroup wg: Int, computeUnits: Int) -> Int {
    let wanted = (4 * max(1, computeUnits) + rows - 1) / max(1, rows)
    return max(1, min(wanted, n / (8 * max(1, wg)), 1024))
  }

  /// Biased variance over each group; rstd = 1/√(var + eps).
  public func groupNorm(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, rstd: DeviceBuffer, _ s: GroupNormShape, dtype: DType
  ) throws {
    try groupNorm(
      x: x, gamma: gamma, beta: beta, y: y, mean: mean, rstd: rstd, s, relu: false, dtype: dtype)
  }

  /// The ReLU applied as y is written: one launch.
  public func groupNormReLU(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, rstd: DeviceBuffer, _ s: GroupNormShape, dtype: DType
  ) throws {
    try groupNorm(
      x: x, gamma: gamma, beta: beta, y: y, mean: mean, rstd: rstd, s, relu: true, dtype: dtype)
  }

  private func groupNorm(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, rstd: DeviceBuffer, _ s: GroupNormShape, relu: Bool, dtype: DType
  ) throws {
    let wg = try configuration(.norm, dtype).workGroup
    try launch(
      .groupNorm, dtype,
      [
        .mem(x), .mem(gamma), .mem(beta), .mem(y), .mem(mean), .mem(rstd), .int(s.c), .int(s.hw),
        .int(s.groups), .real(s.eps), .int(relu ? 1 : 0),
      ], global: [s.n * s.groups * wg], local: [wg])
  }

  public func groupNormGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer,
    dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer, dbeta: DeviceBuffer,
    _ s: GroupNormShape, dtype: DType
  ) throws {
    try groupNormGrad(
      x: x, gamma: gamma, mean: mean, rstd: rstd, relu: nil, dy: dy, dx: dx, dgamma: dgamma,
      dbeta: dbeta, s, dtype: dtype)
  }

  /// dy masked by the output inside both gradient kernels: no separate ReLU gradient.
  public func groupNormReLUGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer,
    y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, _ s: GroupNormShape, dtype: DType
  ) throws {
    try groupNormGrad(
      x: x, gamma: gamma, mean: mean, rstd: rstd, relu: y, dy: dy, dx: dx, dgamma: dgamma,
      dbeta: dbeta, s, dtype: dtype)
  }

  /// `relu`: the forward's output, whose sign masks dy; nil for a plain group norm.
  private func groupNormGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer,
    relu y: DeviceBuffer?, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, _ s: GroupNormShape, dtype: DType
  ) throws {
    let wg = try configuration(.norm, dtype).workGroup
    // Without ReLU the mask argument is bound to dy and never read.
    let (mask, masked): (KernelArg, KernelArg) = (.mem(y ?? dy), .int(y == nil ? 0 : 1))
    try launch(
      .groupNormGradInput, dtype,
      [
        .mem(x), .mem(gamma), .mem(mean), .mem(rstd), .mem(dy), mask, masked,
        .mem(dx), .int(s.c), .int(s.hw), .int(s.groups),
      ], global: [s.n * s.groups * wg], local: [wg])
    try launch(
      .groupNormGradParams, dtype,
      [
        .mem(x), .mem(mean), .mem(rstd), .mem(dy), mask, masked,
        .mem(dgamma), .mem(dbeta), .int(s.n), .int(s.c), .int(s.hw), .int(s.groups),
      ], global: [s.c * wg], local: [wg])
  }

  /// Up to `softmaxRowKernelClasses` classes a work-item handles a row; beyond, a work-group does,
  /// with local-memory max and sum. A label that is not a class index gives a NaN loss.
  public func softmaxCrossEntropy(
    logits: DeviceBuffer, labels: DeviceBuffer, probs: DeviceBuffer, losses: DeviceBuffer,
    rows: Int, classes: Int, dtype: DType
  ) throws {
    if classes <= Self.softmaxRowKernelClasses {
      try launch(
        .softmaxCERows, dtype,
        [.mem(logits), .mem(labels), .mem(probs), .mem(losses), .int(rows), .int(classes)],
        global: [rows])
    } else {
      let wg = try configuration(.norm, dtype).workGroup
      try launch(
        .softmaxCEWorkGroup, dtype,
        [.mem(logits), .mem(labels), .mem(probs), .mem(losses), .int(classes)],
        global: [rows * wg], local: [wg])
    }
  }

  /// One work-item per element of dlogits.
  public func softmaxCrossEntropyGrad(
    probs: DeviceBuffer, labels: DeviceBuffer, cotangent: DeviceBuffer, dlogits: DeviceBuffer,
    rows: Int, classes: Int, dtype: DType
  ) throws {
    try launch(
      .softmaxCEGrad, dtype,
      [.mem(probs), .mem(labels), .mem(cotangent), .mem(dlogits), .int(rows), .int(classes)],
      global: [rows * classes])
  }

  /// The class count up to which softmax uses one work-item per row.
  public static let softmaxRowKernelClasses = 32
}
