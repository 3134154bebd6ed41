import DiffEqCore

/// dy/dt = f(t, y(t), [y(t − τ₁), …, y(t − τ_m)]; θ): a delay differential equation's right-hand
/// side, a differentiable closure, and the module that owns its parameters θ (nil when none).
/// The delayed states arrive in the order of `ddeint`'s `delays`; each has y's shape.
public struct DelayVectorField {
  public let parameters: Module?
  let f: (Double, Tensor, [Tensor]) throws -> Tensor

  public init(
    parameters: Module? = nil, _ f: @escaping (Double, Tensor, [Tensor]) throws -> Tensor
  ) {
    self.parameters = parameters
    self.f = f
  }

  public func callAsFunction(_ t: Double, _ y: Tensor, _ delayed: [Tensor]) throws -> Tensor {
    try f(t, y, delayed)
  }
}

/// y(t) for t ≤ t0, where a delay equation reads its past before the start.
public enum DDEHistory {
  /// y(t) = y0 for every t ≤ t0 (constant initial features); differentiated as y0 is.
  case constant
  /// y(t) = h(t) for t ≤ t0, of y0's shape. `.direct` differentiates whatever h records; the
  /// adjoint treats h's values as constants.
  case function((Double) throws -> Tensor)
}
