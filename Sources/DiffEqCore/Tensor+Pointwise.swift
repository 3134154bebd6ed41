import Kernels

extension Tensor {
  /// f(self) element-wise, with f' applied to the cotangent in the backward pass.
  func pointwise(_ op: UnaryOp) throws -> Tensor {
    let out = try empty(shape)
    try backend.unary(op, buffer, out.buffer, count: count, dtype: dtype)
    let x = detached
    return out.recorded(from: self) { g in [try x.pointwiseBackward(op, g)] }
  }

  /// g ⊙ f′(self): the backward pass of `pointwise(op)` (also `MLP`'s VJP). Out of place: the
  /// CPU loop vectorises only when its output overlaps neither input.
  func pointwiseBackward(_ op: UnaryOp, _ g: Tensor) throws -> Tensor {
    let dx = try empty(shape)
    try backend.unaryGrad(op, x: buffer, dy: g.buffer, dx: dx.buffer, count: count, dtype: dtype)
    return dx
  }

  public func relu() throws -> Tensor { try pointwise(.relu) }
  public func tanh() throws -> Tensor { try pointwise(.tanh) }
  public func sigmoid() throws -> Tensor { try pointwise(.sigmoid) }
  /// log(1 + eˣ), computed without overflow.
  public func softplus() throws -> Tensor { try pointwise(.softplus) }
  /// x for x > 0, eˣ − 1 otherwise (α = 1).
  public func elu() throws -> Tensor { try pointwise(.elu) }
  public func exp() throws -> Tensor { try pointwise(.exp) }
  public func log() throws -> Tensor { try pointwise(.log) }
  public func square() throws -> Tensor { try pointwise(.square) }
  public func sqrt() throws -> Tensor { try pointwise(.sqrt) }
  public func abs() throws -> Tensor { try pointwise(.abs) }
  public func reciprocal() throws -> Tensor { try pointwise(.reciprocal) }
}
