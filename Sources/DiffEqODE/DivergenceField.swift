import DiffEqCore
import Kernels

/// How a continuous normalizing flow estimates tr(∂f/∂z). Spelled `exact`, `hutchinson` and
/// `hutchinson-gaussian` in settings and on the command line.
public enum TraceEstimator: String, Sendable, NamedSetting {
  public static let settingName = "trace estimator"

  /// Σₖ eₖᵀ(∂f/∂z)eₖ over the d basis vectors, batched: d Jacobian-vector products per
  /// evaluation, for low dimension.
  case exact
  /// Hutchinson's εᵀ(∂f/∂z)ε with Rademacher ε (±1), drawn once per solve.
  case hutchinson
  /// Hutchinson's estimator with standard normal ε, drawn once per solve.
  case hutchinsonGaussian = "hutchinson-gaussian"

  /// The probes ε [batch, d] of one solve (nil for the exact trace). They must stay fixed for the
  /// whole solve, forward and backward: redrawing them inside it makes the field random in time,
  /// which an adaptive solver's error estimate cannot follow.
  public func probes(
    batch: Int, dimension: Int, dtype: DType = .float32, rng: inout RandomState,
    on backend: any Backend
  ) throws -> Tensor? {
    switch self {
    case .exact: return nil
    case .hutchinsonGaussian:
      return try .normal([batch, dimension], dtype: dtype, rng: &rng, on: backend)
    case .hutchinson:
      let signs = (0..<(batch * dimension)).map { _ in rng.next() >> 63 == 0 ? 1.0 : -1.0 }
      return try Tensor(signs, shape: [batch, dimension], dtype: dtype, on: backend)
    }
  }
}

/// A field f(t, z; θ) with its Jacobian's trace, what a continuous normalizing flow integrates:
/// `evaluate(t, z, ε)` gives (f [batch, d], trace [batch, 1]), the trace εᵀ(∂f/∂z)ε for probes ε
/// or the exact tr(∂f/∂z) for nil, from differentiable ops; `vectorJacobian(t, z, ε, a, b)` also
/// gives aᵀ·∂f/∂z + b·∂trace/∂z and the same for θ (`trainableParameters()` order) without a tape.
public struct DivergenceField {
  public typealias Evaluate = (Double, Tensor, Tensor?) throws -> (value: Tensor, trace: Tensor)
  public typealias VectorJacobian = (Double, Tensor, Tensor?, Tensor, Tensor) throws -> (
    value: Tensor, trace: Tensor, input: Tensor, parameters: [Tensor]
  )

  public let parameters: Module?
  public let evaluate: Evaluate
  public let vectorJacobian: VectorJacobian

  public init(
    parameters: Module?, evaluate: @escaping Evaluate,
    vectorJacobian: @escaping VectorJacobian
  ) {
    self.parameters = parameters
    self.evaluate = evaluate
    self.vectorJacobian = vectorJacobian
  }

  /// The flow's field on the state y = [z, ℓ] [batch, d + 1]: dz/dt = f(t, z), dℓ/dt = −trace,
  /// so that ℓ(t) − ℓ(0) = log p(z(t)) − log p(z(0)) along a trajectory. With `reversedFrom` T it
  /// is the same field in reversed time s = T − t (y′(s) = −F(T − s, y)), which carries a sample
  /// of the base density at T back to t = 0. The probes stay fixed for every solve of the field.
  public func augmented(probes: Tensor?, reversedFrom end: Double? = nil) -> VectorField {
    let sign = end == nil ? 1.0 : -1.0
    let time: (Double) -> Double = { s in end.map { $0 - s } ?? s }
    let evaluate = evaluate
    let vectorJacobian = vectorJacobian
    func split(_ y: Tensor) throws -> Tensor {
      try y.slice(axis: 1, 0..<(y.shape[1] - 1))
    }
    // Forward in time the signs cost no operation.
    func signed(_ t: Tensor) throws -> Tensor { end == nil ? t : try t * -1.0 }
    return VectorField(
      parameters: parameters,
      { t, y in
        let (f, trace) = try evaluate(time(t), try split(y), probes)
        return try signed(Tensor.concat([f, trace * -1.0], axis: 1))
      },
      vectorJacobian: { t, y, a in
        let d = y.shape[1] - 1
        let aZ = try signed(a.slice(axis: 1, 0..<d))
        let aTrace = try a.slice(axis: 1, d..<(d + 1)) * -sign
        let r = try vectorJacobian(time(t), try split(y), probes, aZ, aTrace)
        let value = try signed(Tensor.concat([r.value, r.trace * -1.0], axis: 1))
        // ℓ does not enter the field: its cotangent column is zero.
        let input = try Tensor.concat([r.input, try aTrace.zerosLike()], axis: 1)
        return (value, input, r.parameters)
      })
  }
}
