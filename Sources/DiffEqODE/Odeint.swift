import DiffEqCore
import Kernels

/// dy/dt = f(t, y; θ): a differentiable closure and the module that owns its parameters θ (nil
/// when it has none). The adjoint methods differentiate with respect to exactly these parameters.
public struct VectorField {
  /// (t, y, a) ↦ (f(t, y), aᵀ·∂f/∂y, aᵀ·∂f/∂θ), the last in `trainableParameters()` order.
  public typealias VectorJacobian = (Double, Tensor, Tensor) throws -> (Tensor, Tensor, [Tensor])

  public let parameters: Module?
  let f: (Double, Tensor) throws -> Tensor
  /// A hand-derived VJP for the backsolve adjoint; nil takes VJPs on the tape. It must agree
  /// with differentiating `f` (what `MLP.vectorField` and the tests of any other provider check).
  let vectorJacobian: VectorJacobian?

  public init(
    parameters: Module? = nil, _ f: @escaping (Double, Tensor) throws -> Tensor,
    vectorJacobian: VectorJacobian? = nil
  ) {
    self.parameters = parameters
    self.f = f
    self.vectorJacobian = vectorJacobian
  }

  public func callAsFunction(_ t: Double, _ y: Tensor) throws -> Tensor { try f(t, y) }
}

/// How gradients of a solution flow back to y0 and θ. Spelled `direct`, `backsolve` and
/// `checkpointed` in settings and on the command line; `adjoint` is read as `backsolve`.
public enum GradientMethod: String, Sendable, NamedSetting {
  public static let settingName = "gradient method"

  /// Backpropagation through every solver operation: exact for the discrete solution; memory
  /// grows with the number of steps.
  case direct
  /// The adjoint ODE solved backward from the final time: memory independent of the number of
  /// steps (only the outputs are kept); exact up to the backward solve's tolerance.
  case backsolve
  /// State checkpoints at every accepted step, each step recomputed and backpropagated: exact
  /// gradients of the discrete solution with memory O(steps × state), stable where backsolve's
  /// reverse-time reconstruction of y is not.
  case checkpointed

  /// Parses a setting's spelling: a case name, or `adjoint` for `backsolve`.
  public init(parsing text: String) throws {
    switch text.lowercased() {
    case "adjoint": self = .backsolve
    case let name:
      guard let method = GradientMethod(rawValue: name) else {
        throw ODEError.invalidOptions(
          "unknown gradient method '\(text)' (direct, backsolve, checkpointed; adjoint = backsolve)"
        )
      }
      self = method
    }
  }

  public init(from decoder: any Decoder) throws {
    self = try GradientMethod(parsing: try decoder.singleValueContainer().decode(String.self))
  }
}

/// The backward solve of `.backsolve`: solver and tolerances (nil: the forward ones), and
/// whether the error norm leaves the parameter adjoint out (the seminorm; fewer rejected steps).
public struct AdjointOptions: Sendable {
  public var solver: ODESolver? = nil
  public var rtol: Double? = nil
  public var atol: Double? = nil
  public var seminorm = true
  public init(
    solver: ODESolver? = nil, rtol: Double? = nil, atol: Double? = nil, seminorm: Bool = true
  ) {
    self.solver = solver
    self.rtol = rtol
    self.atol = atol
    self.seminorm = seminorm
  }
}

/// The states at the requested times (the first is y0) and the work it took. The states are
/// differentiable with respect to y0 and the field's parameters by the chosen `GradientMethod`.
public struct ODESolution {
  /// y at every requested time, stacked along a new leading axis: [times.count] + y0's shape
  /// (torchdiffeq's layout). A loss over the whole trajectory is cheapest taken on this.
  public let trajectory: Tensor
  /// y at each requested time (slices of `trajectory`).
  public let states: [Tensor]
  public let statistics: ODEStatistics
}

/// Solves dy/dt = f(t, y) from y(times[0]) = y0, returning y at every time in `times` (strictly
/// increasing; the first is t0). Time is Float64 on the host; the state is a device tensor.
public func odeint(
  _ field: VectorField, _ y0: Tensor, times: [Double], options: ODEOptions = ODEOptions(),
  gradient: GradientMethod = .direct, adjoint: AdjointOptions = AdjointOptions()
) throws -> ODESolution {
  try odeint(
    field, y0, times: times, timesTensor: nil, options: options, gradient: gradient,
    adjoint: adjoint)
}

/// `odeint` with the times as a 1-D tensor, through which gradients can flow: differentiate
/// with respect to `times` (e.g. `valueAndGrad(at: [y0, times])`) to learn output or start
/// times. The gradient is the continuous solution's,
///   ∂L/∂tᵢ = ∂L/∂y(tᵢ) · f(tᵢ, y(tᵢ)) for i ≥ 1,   ∂L/∂t₀ = −(a(t₀) − ∂L/∂y(t₀)) · f(t₀, y₀),
/// with a(t₀) = ∂L/∂y0 the adjoint at t₀ (perturbing t₀ shifts the start of the trajectory but
/// not y0). It needs an adjoint gradient method: `.direct` differentiates the solver's
/// operations, whose step sizes are host values, and is rejected when `times` is tracked.
public func odeint(
  _ field: VectorField, _ y0: Tensor, times: Tensor, options: ODEOptions = ODEOptions(),
  gradient: GradientMethod = .direct, adjoint: AdjointOptions = AdjointOptions()
) throws -> ODESolution {
  guard times.rank == 1 else {
    throw ODEError.invalidTimes("times must be a 1-D tensor, not of shape \(times.shape)")
  }
  if times.isTracked && gradient == .direct {
    throw TensorError.invalidArgument(
      op: "odeint",
      reason: "gradients with respect to times need .backsolve or .checkpointed")
  }
  return try odeint(
    field, y0, times: try times.toDoubles(), timesTensor: times.isTracked ? times : nil,
    options: options, gradient: gradient, adjoint: adjoint)
}

func odeint(
  _ field: VectorField, _ y0: Tensor, times: [Double], timesTensor: Tensor?,
  options: ODEOptions, gradient: GradientMethod, adjoint: AdjointOptions
) throws -> ODESolution {
  try options.validate()
  guard times.count >= 1, let t0 = times.first else {
    throw ODEError.invalidTimes("at least one time (t0) is needed")
  }
  let stats = ODEStatistics()
  let later = Array(times.dropFirst())
  func integrator(recorder: ((ODEStepRecord) -> Void)? = nil) -> ODEIntegrator {
    var i = ODEIntegrator(
      f: { t, y in [try field(t, y[0])] }, options: options, normComponents: 1,
      onEvaluation: { stats.forwardEvaluations += 1 },
      onStep: { stats.countStep(accepted: $0, backward: false) })
    i.recorder = recorder
    return i
  }
  if gradient == .direct {
    let states = [y0] + (try integrator().solve([y0], from: t0, to: later).map { $0[0] })
    let trajectory = try Tensor.concat(states.map { try $0.reshaped([1] + y0.shape) }, axis: 0)
    return ODESolution(trajectory: trajectory, states: states, statistics: stats)
  }

  // Adjoint methods: a forward solve that records nothing, and one recorded node whose rule runs
  // the backward pass.
  let params = field.parameters?.trainableParameters() ?? []
  let paramValues = params.map { $0.parameter.value }
  var records: [ODEStepRecord] = []
  var finalStep: Double? = nil
  let outs = try withParameters(of: field.parameters, setTo: paramValues.map(\.detached)) {
    var forward = integrator(recorder: gradient == .checkpointed ? { records.append($0) } : nil)
    forward.onFinalStepProposal = { finalStep = $0 }
    return try forward.solve([y0.detached], from: t0, to: later).map { $0[0] }
  }
  let states = [y0.detached] + outs
  let stacked = try Tensor.concat(states.map { try $0.reshaped([1] + y0.shape) }, axis: 0)
  let backward = AdjointBackward(
    field: field, times: times, states: states, parameterValues: paramValues, options: options,
    adjoint: adjoint, statistics: stats, forwardFinalStep: finalStep)
  let timeInputs = timesTensor.map { [$0] } ?? []
  let recorded = stacked.recorded(from: [y0] + timeInputs + paramValues) { g in
    let cotangents = try times.indices.map {
      try g.slice(axis: 0, $0..<($0 + 1)).reshaped(y0.shape)
    }
    let (dy0, dtheta) =
      gradient == .checkpointed
      ? try backward.checkpointed(records, cotangents: cotangents)
      : try backward.backsolve(cotangents: cotangents)
    guard let timesTensor else { return [dy0] + dtheta }
    let dtimes = try backward.timeGradients(cotangents: cotangents, initialAdjoint: dy0)
    return [
      dy0,
      try Tensor(dtimes, shape: [times.count], dtype: timesTensor.dtype, on: timesTensor.backend),
    ]
      + dtheta
  }
  let sliced = try times.indices.map {
    try recorded.slice(axis: 0, $0..<($0 + 1)).reshaped(y0.shape)
  }
  return ODESolution(trajectory: recorded, states: sliced, statistics: stats)
}
