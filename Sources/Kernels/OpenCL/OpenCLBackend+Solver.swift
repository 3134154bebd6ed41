import COpenCL
import Foundation

/// The fused arithmetic of ODE solvers (`kernels/solver.cl`), replacing the unfused fallbacks of
/// `Backend+Solver.swift`: one launch per eight terms of a linear combination, and one launch plus
/// one small blocking read for the error norm.
extension OpenCLBackend {
  /// The most terms one `linear_combination` launch takes (its buffer-argument slots).
  static let linearCombinationSlots = 8

  /// y[i] = Σ_k coefficients[k] · xs[k][i], summed in the order of `xs` in the element type.
  ///
  /// Up to 8 terms take one launch. Longer combinations are chained: the first launch writes y
  /// from 8 terms and each later one computes y ← 1·y + 7 more terms, so n terms take
  /// 1 + ⌈(n − 8)/7⌉ launches and y is re-read once per extra launch. `y` must not alias an input.
  public func linearCombination(
    _ xs: [DeviceBuffer], coefficients: [Double], into y: DeviceBuffer, count: Int, dtype: DType
  ) throws {
    precondition(
      xs.count == coefficients.count && !xs.isEmpty,
      "linearCombination: \(xs.count) buffers for \(coefficients.count) coefficients")
    try requireType(dtype)
    let slots = Self.linearCombinationSlots
    var next = 0
    var first = true
    while next < xs.count {
      // After the first launch, y itself is slot 0 with coefficient 1. Unused slots need a valid
      // buffer argument; the kernel never reads them (see solver.cl).
      // y, count, terms; then `slots` buffers and `slots` coefficients.
      var args = InlineArray<19, KernelArg>(repeating: .real(0))
      precondition(args.count == 3 + 2 * slots)
      var used = 0
      if !first {
        args[3] = .mem(y)
        args[3 + slots] = .real(1)
        used = 1
      }
      while used < slots && next < xs.count {
        args[3 + used] = .mem(xs[next])
        args[3 + slots + used] = .real(coefficients[next])
        used += 1
        next += 1
      }
      for slot in used..<slots { args[3 + slot] = args[3] }
      args[0] = .mem(y)
      args[1] = .int(count)
      args[2] = .int(used)
      first = false
      try launch(.linearCombination, dtype, args, global: [count])
    }
  }

  /// Σ_i (err[i] / (atol + rtol · max(|y0[i]|, |y1[i]|)))², accumulated in the element type on the
  /// device and in double over the work-group partials on the host.
  ///
  /// A NaN in any of `error`, `y0` or `y1` gives NaN (the maximum propagates NaN here, unlike
  /// `BinaryOp.maximum`), so a step that produced NaN is rejected rather than scored on the
  /// remaining components.
  public func scaledErrorSquaredSum(
    error: DeviceBuffer, y0: DeviceBuffer, y1: DeviceBuffer, atol: Double, rtol: Double,
    count: Int, dtype: DType
  ) throws -> Double {
    try scaledErrorSquaredSums(
      [ScaledErrorTerm(error: error, y0: y0, y1: y1, count: count)], atol: atol, rtol: rtol,
      dtype: dtype)[0]
  }

  /// Each term's sum as `scaledErrorSquaredSum`, with one launch per term into one buffer of
  /// partials and one blocking read for all of them.
  ///
  /// A term takes G work-groups, G = min(⌈count / WG⌉, 4 · compute units, 256): enough groups to
  /// occupy the device, few enough that reading back and summing the partials is cheap. Each
  /// work-item covers count / (G · WG) elements with a grid-stride loop.
  public func scaledErrorSquaredSums(
    _ terms: [ScaledErrorTerm], atol: Double, rtol: Double, dtype: DType
  ) throws -> [Double] {
    try requireType(dtype)
    let wg = try configuration(.solver, dtype).workGroup
    let groups = terms.map { max(1, min(($0.count + wg - 1) / wg, 4 * device.computeUnits, 256)) }
    let partials = try allocate(max(1, groups.reduce(0, +)), dtype)
    var offset = 0
    for (term, g) in zip(terms, groups) {
      try launch(
        .scaledErrorSquaredSum, dtype,
        [
          .mem(term.error), .mem(term.y0), .mem(term.y1), .real(atol), .real(rtol),
          .int(term.count), .mem(partials), .int(offset),
        ], global: [g * wg], local: [wg])
      offset += g
    }
    if terms.isEmpty { return [] }
    // The one blocking read: it also waits for the launches.
    let values: [Double]
    switch dtype {
    case .float32:
      var v = [Float](repeating: 0, count: offset)
      try v.withUnsafeMutableBytes { try read(partials, into: $0) }
      values = v.map(Double.init)
    case .float64:
      var v = [Double](repeating: 0, count: offset)
      try v.withUnsafeMutableBytes { try read(partials, into: $0) }
      values = v
    }
    var start = 0
    return groups.map { g in
      defer { start += g }
      return values[start..<start + g].reduce(0, +)
    }
  }
}
