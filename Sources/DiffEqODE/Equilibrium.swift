import DiffEqCore
import Kernels

/// How gradients reach the input and the parameters through an equilibrium z* = f(z*, x; θ).
public enum EquilibriumGradient: Sendable, Equatable {
  /// The implicit function theorem: λ solves λ = ∂L/∂z* + (∂f/∂z)ᵀλ at z* (by `options`, with
  /// vector-Jacobian products only), then ∂L/∂x = λᵀ∂f/∂x and ∂L/∂θ = λᵀ∂f/∂θ. Exact up to the
  /// backward solve's tolerance; memory does not grow with the iterations.
  case implicit(FixedPointOptions)
  /// The Jacobian-free approximation ("JFB"): λ = ∂L/∂z*, one VJP, no backward solve.
  case jacobianFree
}

/// Work and outcome of an equilibrium solve; the backward fields fill in when gradients are
/// computed.
public final class EquilibriumStatistics {
  public internal(set) var forwardIterations = 0
  public internal(set) var forwardResidual = Double.nan
  public internal(set) var forwardConverged = false
  public internal(set) var backwardIterations = 0
  public internal(set) var backwardResidual = Double.nan
  public internal(set) var backwardConverged = false
  public init() {}
}

/// z* with z* = f(z*, x; θ), found from `start` by `forward` without recording (memory does not
/// depend on the iterations), and recorded as one node whose gradients with respect to `x` and
/// `parameters`' trainable parameters are given by `gradient`.
///
/// A forward or backward solve that stops at its iteration cap is reported in the statistics
/// (`forwardConverged`), not thrown: whether that is an error is the caller's choice. A NaN or
/// infinite residual is always an error.
public func equilibrium(
  _ f: @escaping (Tensor, Tensor) throws -> Tensor, input x: Tensor, parameters: Module?,
  start: Tensor, forward: FixedPointOptions = FixedPointOptions(),
  gradient: EquilibriumGradient = .implicit(FixedPointOptions())
) throws -> (value: Tensor, statistics: EquilibriumStatistics) {
  let statistics = EquilibriumStatistics()
  let params = parameters?.trainableParameters() ?? []
  let paramValues = params.map { $0.parameter.value }
  let detachedParams = paramValues.map(\.detached)
  let xDetached = x.detached
  let found = try withParameters(of: parameters, setTo: detachedParams) {
    try findFixedPoint({ try f($0, xDetached) }, from: start, options: forward)
  }
  statistics.forwardIterations = found.iterations
  statistics.forwardResidual = found.relativeResidual
  statistics.forwardConverged = found.converged
  return (
    try recordedEquilibrium(
      f, zStar: found.value, input: x, parameters: parameters, gradient: gradient,
      statistics: statistics),
    statistics
  )
}

/// `zStar`, a fixed point of f(·, x) found without recording, recorded as one node whose
/// gradients with respect to `x` and the trainable parameters follow `gradient`; the backward
/// solve's work goes into `statistics`.
func recordedEquilibrium(
  _ f: @escaping (Tensor, Tensor) throws -> Tensor, zStar: Tensor, input x: Tensor,
  parameters: Module?, gradient: EquilibriumGradient, statistics: EquilibriumStatistics
) throws -> Tensor {
  let paramValues = parameters?.trainableParameters().map { $0.parameter.value } ?? []
  let detachedParams = paramValues.map(\.detached)
  let xDetached = x.detached
  return zStar.recorded(from: [x] + paramValues) { g in
    var lambda = g.detached
    if case .implicit(let options) = gradient {
      // λ = g + (∂f/∂z)ᵀ λ at (z*, x), with f's parameters held at the forward values.
      // f is recorded at z* once; each iteration runs only its backward pass.
      let solved = try withParameters(of: parameters, setTo: detachedParams) {
        let (_, transposedJacobian) = try pullback(at: zStar) { try f($0, xDetached) }
        return try findFixedPoint(
          { l in try g.detached + transposedJacobian(l) }, from: g.detached, options: options)
      }
      statistics.backwardIterations = solved.iterations
      statistics.backwardResidual = solved.relativeResidual
      statistics.backwardConverged = solved.converged
      lambda = solved.value
    }
    // λᵀ ∂f/∂x and λᵀ ∂f/∂θ in one VJP at z*, the parameters swapped for fresh leaves by vjp.
    let (_, gx, gp) = try withParameters(of: parameters, setTo: detachedParams) {
      try vjp(parameters, at: [xDetached], cotangents: [lambda]) { xs in
        [try f(zStar, xs[0])]
      }
    }
    return [gx[0]] + gp
  }
}
