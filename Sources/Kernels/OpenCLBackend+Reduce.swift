import COpenCL
import Foundation

/// Reductions and the operations built on them: sums, group normalisation, softmax cross-entropy.
extension OpenCLBackend {
  /// A contiguous reduced axis (inner == 1) longer than a few elements gets a work-group per row
  /// with a local-memory tree; otherwise one work-item per output element loops over the axis.
  ///
  /// Limitation: a single very long reduction (outer·inner small, n in the millions) uses few
  /// work-groups; a two-pass reduction would occupy the whole device.
  public func reduceSum(
    _ x: DeviceBuffer, _ y: DeviceBuffer, shape: ReductionShape, scale: Double, dtype: DType
  ) throws {
    if shape.inner == 1 && shape.n > 32 {
      let wg = try configuration(.reduce, dtype).workGroup
      try launch(
        .reduce, "reduce_rows", dtype, [.mem(x), .mem(y), .int(shape.n), .real(scale)],
        global: [shape.outer * wg], local: [wg])
    } else {
      let count = shape.outer * shape.inner
      try launch(
        .reduce, "reduce_cols", dtype,
        [.mem(x), .mem(y), .int(shape.n), .int(shape.inner), .real(scale), .int(count)],
        global: [count])
    }
  }

  /// Biased variance over each group; rstd = 1/√(var + eps).
  public func groupNorm(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, rstd: DeviceBuffer, _ s: GroupNormShape, dtype: DType
  ) throws {
    let wg = try configuration(.norm, dtype).workGroup
    try launch(
      .norm, "group_norm", dtype,
      [
        .mem(x), .mem(gamma), .mem(beta), .mem(y), .mem(mean), .mem(rstd), .int(s.c), .int(s.hw),
        .int(s.groups), .real(s.eps),
      ], global: [s.n * s.groups * wg], local: [wg])
  }

  public func groupNormGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer,
    dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer, dbeta: DeviceBuffer,
    _ s: GroupNormShape, dtype: DType
  ) throws {
    let wg = try configuration(.norm, dtype).workGroup
    try launch(
      .norm, "group_norm_grad_input", dtype,
      [
        .mem(x), .mem(gamma), .mem(mean), .mem(rstd), .mem(dy), .mem(dx), .int(s.c), .int(s.hw),
        .int(s.groups),
      ], global: [s.n * s.groups * wg], local: [wg])
    try launch(
      .norm, "group_norm_grad_params", dtype,
      [
        .mem(x), .mem(mean), .mem(rstd), .mem(dy), .mem(dgamma), .mem(dbeta), .int(s.n),
        .int(s.c), .int(s.hw), .int(s.groups),
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
        .norm, "softmax_ce_rows", dtype,
        [.mem(logits), .mem(labels), .mem(probs), .mem(losses), .int(rows), .int(classes)],
        global: [rows])
    } else {
      let wg = try configuration(.norm, dtype).workGroup
      try launch(
        .norm, "softmax_ce_wg", dtype,
        [.mem(logits), .mem(labels), .mem(probs), .mem(losses), .int(classes)],
        global: [rows * wg], local: [wg])
    }
  }

  /// The class count up to which softmax uses one work-item per row.
  public static let softmaxRowKernelClasses = 32
}
