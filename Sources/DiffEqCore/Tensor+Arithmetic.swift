import Kernels

extension Tensor {
  /// a ∘ b with broadcasting; gradients are summed back over broadcast dimensions.
  static func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, name: String) throws -> Tensor {
    try a.checkCompatible(b, name)
    let shape = try Broadcast.shape(a.shape, b.shape, op: name)
    let out = try Tensor.empty(shape, dtype: a.dtype, on: a.backend)
    if out.count > 0 {
      let layout = try Broadcast.layout(a.shape, b.shape, out: shape, op: name)
      try a.backend.binary(op, a.buffer, b.buffer, out.buffer, layout: layout, dtype: a.dtype)
    }
    let (sa, sb) = (a.detached, b.detached)
    return out.recorded(from: a, b) { g in
      switch op {
      case .add: return [try g.sum(to: sa.shape), try g.sum(to: sb.shape)]
      case .sub: return [try g.sum(to: sa.shape), try (-g).sum(to: sb.shape)]
      case .mul: return [try (g * sb).sum(to: sa.shape), try (g * sa).sum(to: sb.shape)]
      case .div:
        let ga = try g / sb
        return [try ga.sum(to: sa.shape), try (-(ga * sa) / sb).sum(to: sb.shape)]
      case .maximum:
        // The gradient goes to the larger operand (to `a` on ties): takeA = 1 − [b > a].
        let takeA = try 1 - Tensor.binary(.sub, sb, sa, name: "maximum").step()
        let ga = try g * takeA
        return [try ga.sum(to: sa.shape), try (g - ga).sum(to: sb.shape)]
      }
    }
  }

  public static func + (a: Tensor, b: Tensor) throws -> Tensor {
    try binary(.add, a, b, name: "add")
  }
  public static func - (a: Tensor, b: Tensor) throws -> Tensor {
    try binary(.sub, a, b, name: "sub")
  }
  public static func * (a: Tensor, b: Tensor) throws -> Tensor {
    try binary(.mul, a, b, name: "mul")
  }
  public static func / (a: Tensor, b: Tensor) throws -> Tensor {
    try binary(.div, a, b, name: "div")
  }

  /// Element-wise maximum with broadcasting.
  public func maximum(_ other: Tensor) throws -> Tensor {
    try Tensor.binary(.maximum, self, other, name: "maximum")
  }

  /// scale · self + shift, element-wise.
  public func affine(scale: Double, shift: Double = 0) throws -> Tensor {
    let out = try empty(shape)
    try backend.affine(buffer, out.buffer, scale: scale, shift: shift, count: count, dtype: dtype)
    return out.recorded(from: self) { g in [try g.affine(scale: scale)] }
  }

  public static func * (a: Tensor, s: Double) throws -> Tensor { try a.affine(scale: s) }
  public static func * (s: Double, a: Tensor) throws -> Tensor { try a.affine(scale: s) }
  public static func / (a: Tensor, s: Double) throws -> Tensor { try a.affine(scale: 1 / s) }
  public static func + (a: Tensor, s: Double) throws -> Tensor { try a.affine(scale: 1, shift: s) }
  public static func + (s: Double, a: Tensor) throws -> Tensor { try a.affine(scale: 1, shift: s) }
  public static func - (a: Tensor, s: Double) throws -> Tensor { try a.affine(scale: 1, shift: -s) }
  public static func - (s: Double, a: Tensor) throws -> Tensor { try a.affine(scale: -1, shift: s) }
  public static prefix func - (a: Tensor) throws -> Tensor { try a.affine(scale: -1) }

  /// 1 where self > 0, else 0; not differentiable (its derivative is zero almost everywhere).
  func step() throws -> Tensor {
    let out = try empty(shape)
    let ones = try Tensor.ones(shape, dtype: dtype, on: backend)
    try backend.unaryGrad(
      .relu, x: buffer, dy: ones.buffer, dx: out.buffer, count: count, dtype: dtype)
    return out
  }
}
