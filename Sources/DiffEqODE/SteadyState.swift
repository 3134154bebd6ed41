import DiffEqCore
import Kernels

/// When the integration of dz/dt = f(z, x) − z stops: at the first accepted step where
/// rms(dz/dt) ≤ `atol` + `rtol`·rms(z) (root mean squares over the whole batch), or at
/// `maxTime` or after `maxSteps` accepted and rejected steps (reported as not converged);
/// `solver` must be adaptive.
public struct SteadyStateOptions: Sendable {
  public var solver: ODESolver
  public var rtol: Double
  public var atol: Double
  /// The integration's tolerances, looser than the steady-state test's is usual.
  public var integration: ODEOptions
  public var maxTime: Double
  /// Whether stopping unconverged (at `maxTime` or the step cap) throws
  /// `ODEError.notConverged` instead of reporting `forwardConverged` false.
  public var requireConvergence: Bool

  public init(
    solver: ODESolver = .dopri5, rtol: Double = 1e-3, atol: Double = 1e-3, maxTime: Double = 100,
    maxSteps: Int = 1000, requireConvergence: Bool = false
  ) {
    self.requireConvergence = requireConvergence
    self.solver = solver
    self.rtol = rtol
    self.atol = atol
    integration = ODEOptions(solver: solver, rtol: rtol, atol: atol)
    integration.maxSteps = maxSteps
    self.maxTime = maxTime
  }
}

/// z* = f(z*, x; θ) found as the steady state of dz/dt = f(z, x) − z from `start` (the continuous
/// DEQ), integrated without recording; gradients as `equilibrium` gives them (the steady state is
/// the same fixed point). `statistics.forwardIterations` counts evaluations of f.
public func steadyState(
  _ f: @escaping (Tensor, Tensor) throws -> Tensor, input x: Tensor, parameters: Module?,
  start: Tensor, options: SteadyStateOptions = SteadyStateOptions(),
  gradient: EquilibriumGradient = .implicit(FixedPointOptions())
) throws -> (value: Tensor, statistics: EquilibriumStatistics) {
  guard let tableau = options.solver.tableau, tableau.errorWeights != nil else {
    throw ODEError.invalidOptions("a steady state needs an adaptive solver, not \(options.solver)")
  }
  guard options.maxTime > 0, options.maxTime.isFinite else {
    throw ODEError.invalidOptions("the steady state's maximum time must be positive")
  }
  try options.integration.validate()
  let statistics = EquilibriumStatistics()
  let parameterValues = parameters?.trainableParameters().map { $0.parameter.value } ?? []
  let xDetached = x.detached
  var evaluations = 0
  var converged = false
  var residual = Double.nan
  let zStar = try withParameters(of: parameters, setTo: parameterValues.map(\.detached)) {
    var integrator = ODEIntegrator(
      f: { _, z in [try f(z[0], xDetached) - z[0]] }, options: options.integration,
      normComponents: 1, onEvaluation: { evaluations += 1 }, onStep: { _ in })
    integrator.isSteady = { z, dz in
      let norms = try Tensor.concat(
        [try (dz[0] * dz[0]).mean().reshaped([1]), try (z[0] * z[0]).mean().reshaped([1])],
        axis: 0
      ).toDoubles()
      let (rate, size) = (norms[0].squareRoot(), norms[1].squareRoot())
      guard rate.isFinite, size.isFinite else {
        throw ODEError.nonFiniteIterate(
          what: "the steady-state residual", iteration: evaluations)
      }
      residual = rate / max(size, .leastNormalMagnitude)
      converged = rate <= options.atol + options.rtol * size
      return converged
    }
    return try integrator.solve([start.detached], from: 0, to: [options.maxTime])[0][0]
  }
  if !converged && options.requireConvergence {
    throw ODEError.notConverged(
      what: "the steady-state integration", evaluations: evaluations, residual: residual)
  }
  statistics.forwardIterations = evaluations
  statistics.forwardResidual = residual
  statistics.forwardConverged = converged
  return (
    try recordedEquilibrium(
      f, zStar: zStar, input: x, parameters: parameters, gradient: gradient,
      statistics: statistics),
    statistics
  )
}
