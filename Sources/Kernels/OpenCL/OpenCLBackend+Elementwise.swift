import COpenCL
import Foundation

/// Element-wise operations, data movement and the optimiser updates: one work-item per element.
extension OpenCLBackend {
  public func fill(_ y: DeviceBuffer, value: Double, count: Int, dtype: DType) throws {
    try launch(.fill, dtype, [.mem(y), .real(value), .int(count)], global: [count])
  }

  /// Conventions where the contract leaves them open: relu'(0) = 0, abs'(0) = 0, elu has α = 1.
  public func unary(
    _ op: UnaryOp, _ x: DeviceBuffer, _ y: DeviceBuffer, count: Int, dtype: DType
  ) throws {
    try launch(
      .unary, dtype, [.int(Int(op.rawValue)), .mem(x), .mem(y), .int(count)],
      global: [count])
  }

  public func unaryGrad(
    _ op: UnaryOp, x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, count: Int, dtype: DType
  ) throws {
    try launch(
      .unaryGrad, dtype,
      [.int(Int(op.rawValue)), .mem(x), .mem(dy), .mem(dx), .int(count)], global: [count])
  }

  public func affine(
    _ x: DeviceBuffer, _ y: DeviceBuffer, scale: Double, shift: Double, count: Int, dtype: DType
  ) throws {
    try launch(
      .affine, dtype, [.mem(x), .mem(y), .real(scale), .real(shift), .int(count)],
      global: [count])
  }

  /// `maximum` is `fmax`: a NaN operand yields the other operand.
  public func binary(
    _ op: BinaryOp, _ a: DeviceBuffer, _ b: DeviceBuffer, _ out: DeviceBuffer,
    layout: BroadcastLayout, dtype: DType
  ) throws {
    let count = layout.count
    let shape = (0..<4).map { layout.shape[$0] }
    let dense = contiguousStrides(shape)
    if sameLayout((0..<4).map { layout.aStrides[$0] }, dense, shape)
      && sameLayout((0..<4).map { layout.bStrides[$0] }, dense, shape)
    {
      try launch(
        .binaryFlat, dtype,
        [.int(Int(op.rawValue)), .mem(a), .mem(b), .mem(out), .int(count)], global: [count])
      return
    }
    let s = layout.shape
    let sa = layout.aStrides
    let sb = layout.bStrides
    try launch(
      .binaryBroadcast, dtype,
      [
        .int(Int(op.rawValue)), .mem(a), .mem(b), .mem(out), .int(s[1]), .int(s[2]), .int(s[3]),
        .int(sa[0]), .int(sa[1]), .int(sa[2]), .int(sa[3]),
        .int(sb[0]), .int(sb[1]), .int(sb[2]), .int(sb[3]), .int(count),
      ], global: [count])
  }

  /// The mask of `elementwise.cl`'s `dropout_mask` (the hash is documented there). The comparison
  /// u ≥ p is done exactly as k ≥ ⌈p·2^24⌉ on the 24-bit integer k = u·2^24, so the mask does not
  /// depend on whether p is rounded to float; the kept value is 1/(1 − p) computed in double and
  /// rounded to the element type.
  public func dropoutMask(
    _ y: DeviceBuffer, count: Int, p: Double, seed: UInt32, dtype: DType
  ) throws {
    precondition(p >= 0 && p <= 1, "dropout probability \(p) outside [0, 1]")
    let threshold = UInt32((p * 16_777_216).rounded(.up))
    try launch(
      .dropoutMask, dtype,
      [.mem(y), .uint(seed), .uint(threshold), .real(1 / (1 - p)), .int(count)], global: [count])
  }

  public func permute(
    _ x: DeviceBuffer, _ y: DeviceBuffer, _ p: PermuteShape, dtype: DType
  ) throws {
    let strides = contiguousStrides(p.shape)
    let d = p.perm.map { p.shape[$0] }
    let t = p.perm.map { strides[$0] }
    try launch(
      .permute, dtype,
      [
        .mem(x), .mem(y), .int(d[1]), .int(d[2]), .int(d[3]),
        .int(t[0]), .int(t[1]), .int(t[2]), .int(t[3]), .int(p.count),
      ], global: [p.count])
  }

  public func copyBlocks(_ x: DeviceBuffer, _ y: DeviceBuffer, _ p: BlockCopy, dtype: DType) throws
  {
    let local = try local2D(width: p.length, .layout, dtype)
    try launch(
      .copyBlocks, dtype,
      [
        .mem(x), .mem(y), .int(p.length), .int(p.srcOffset), .int(p.srcStride),
        .int(p.dstOffset), .int(p.dstStride), .int(p.blocks),
      ], global: [p.length, p.blocks], local: local)
  }

  public func optimizerStep(
    _ step: OptimizerStep, param: DeviceBuffer, grad: DeviceBuffer, state1: DeviceBuffer,
    state2: DeviceBuffer?, count: Int, dtype: DType
  ) throws {
    switch step {
    case .sgd(let lr, let momentum, let nesterov, let wd):
      try launch(
        .sgd, dtype,
        [
          .mem(param), .mem(grad), .mem(state1), .real(lr), .real(momentum), .real(wd),
          .int(nesterov ? 1 : 0), .int(count),
        ], global: [count])
    case .adam(let lr, let beta1, let beta2, let eps, let wd, let decoupled, let t):
      guard let state2 else { preconditionFailure("adam needs state2 (the second moment)") }
      precondition(t >= 1, "adam step counts from 1")
      // In double, then rounded: 1 − β and 1 − β^t lose digits when formed in float.
      let bc1 = 1 - pow(beta1, Double(t))
      let bc2 = 1 - pow(beta2, Double(t))
      try launch(
        .adam, dtype,
        [
          .mem(param), .mem(grad), .mem(state1), .mem(state2), .real(lr), .real(beta1),
          .real(beta2), .real(1 - beta1), .real(1 - beta2), .real(eps), .real(wd),
          .int(decoupled ? 1 : 0), .real(bc1), .real(bc2), .int(count),
        ], global: [count])
    case .rmsprop(let lr, let alpha, let eps):
      try launch(
        .rmsprop, dtype,
        [
          .mem(param), .mem(grad), .mem(state1), .real(lr), .real(alpha), .real(1 - alpha),
          .real(eps), .int(count),
        ],
        global: [count])
    }
  }

  /// A 2-D work-group for ranges whose dimension 0 has `width` items: as wide as the row (a power
  /// of two, up to the program's flat size) and tall enough to fill the group, so narrow rows do
  /// not leave most work-items idle.
  func local2D(width: Int, _ program: ProgramName, _ dtype: DType) throws -> InlineArray<2, Int> {
    try requireType(dtype)
    let flat = try configuration(program, dtype).flatLocal
    var w = 1
    while w < width && w * 2 <= flat { w *= 2 }
    let tallest = device.maxWorkItemSizes.count > 1 ? device.maxWorkItemSizes[1] : 1
    return [w, max(1, min(flat / w, tallest))]
  }
}

/// Row-major strides of a dense array of `shape`.
func contiguousStrides(_ shape: [Int]) -> [Int] {
  var strides = [Int](repeating: 1, count: shape.count)
  var s = 1
  for d in shape.indices.reversed() {
    strides[d] = s
    s *= shape[d]
  }
  return strides
}

/// Whether `strides` address the dense layout (dimensions of extent 1 may have any stride).
func sameLayout(_ strides: [Int], _ dense: [Int], _ shape: [Int]) -> Bool {
  shape.indices.allSatisfy { shape[$0] <= 1 || strides[$0] == dense[$0] }
}
