import COpenCL
import Foundation

/// The LM-ResNet update and its adjoint (`kernels/solver.cl`).
extension OpenCLBackend {
  /// One element-wise launch; k stays on the device.
  public func lmUpdate(
    u: DeviceBuffer, previous: DeviceBuffer, branch: DeviceBuffer?, k: DeviceBuffer,
    scale: Double, y: DeviceBuffer, count: Int, dtype: DType
  ) throws {
    try launch(
      .lmUpdate, dtype,
      [
        .mem(u), .mem(previous), .mem(branch ?? u), .mem(k), .real(scale), .mem(y), .int(count),
        .int(branch == nil ? 0 : 1),
      ], global: [count])
  }

  /// One launch of G work-groups (as `scaledErrorSquaredSum`) for the element-wise cotangents
  /// and dk's partial sums, and, when dk is asked for, one `reduceSum` of the G partials into it
  /// on the device.
  public func lmUpdateGrad(
    u: DeviceBuffer, previous: DeviceBuffer, k: DeviceBuffer, dy: DeviceBuffer,
    du: DeviceBuffer?, dPrevious: DeviceBuffer?, dBranch: DeviceBuffer?, dk: DeviceBuffer?,
    scale: Double, count: Int, dtype: DType
  ) throws {
    if count == 0 {
      if let dk { try fill(dk, value: 0, count: 1, dtype: dtype) }
      return
    }
    let wg = try configuration(.solver, dtype).workGroup
    let groups = max(1, min((count + wg - 1) / wg, 4 * device.computeUnits, 256))
    let partials = try dk.map { _ in try allocate(groups, dtype) }
    let flags =
      (du == nil ? 0 : 1) | (dPrevious == nil ? 0 : 2) | (dBranch == nil ? 0 : 4)
      | (dk == nil ? 0 : 8)
    // Unused outputs are bound to dy and never written (their flag is clear).
    try launch(
      .lmUpdateGrad, dtype,
      [
        .mem(u), .mem(previous), .mem(k), .mem(dy), .mem(du ?? dy), .mem(dPrevious ?? dy),
        .mem(dBranch ?? dy), .mem(partials ?? dy), .real(scale), .int(count), .int(flags),
      ], global: [groups * wg], local: [wg])
    if let dk, let partials {
      try reduceSum(
        partials, dk, shape: ReductionShape(outer: 1, n: groups, inner: 1), scale: 1,
        dtype: dtype)
    }
  }
}
