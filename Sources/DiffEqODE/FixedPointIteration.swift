import DiffEqCore
import Kernels

/// How a fixed point z = F(z) is found.
public enum FixedPointMethod: Sendable, Equatable {
  /// z ← F(z).
  case iteration
  /// Anderson acceleration (type II): each step mixes the last `memory` iterates with weights α
  /// that minimise ‖Σ αᵢ (F(zᵢ) − zᵢ)‖ subject to Σ αᵢ = 1, solved per sample;
  /// z ← β Σ αᵢ F(zᵢ) + (1 − β) Σ αᵢ zᵢ. β is `mixing`.
  case anderson(memory: Int, mixing: Double)
  /// Limited-memory Broyden on g(z) = F(z) − z (`BroydenInverse`): z ← z − B·g with B the
  /// per-sample inverse-Jacobian estimate from the last `memory` rank-one updates, no line search.
  /// Full Broyden steps can diverge far from a root, so, as torchdeq and the DEQ authors' solver
  /// do, the search returns the iterate with the lowest residual, and stops early once the
  /// residual has grown `FixedPointMethod.broydenDivergence`-fold over the first.
  case broyden(memory: Int)

  /// The growth of Broyden's residual over its first at which the search gives up.
  public static let broydenDivergence = 1e3
}

/// When a fixed-point search stops: at a relative residual ‖F(z) − z‖ / ‖F(z)‖ (over the whole
/// batch) of at most `tolerance`, or after `maxIterations` evaluations of F.
///
/// The same options serve an implicit gradient's backward solve, λ = g + (∂f/∂z)ᵀλ, where
/// Broyden and Anderson act as Krylov-like solvers of the linear system (I − (∂f/∂z)ᵀ)λ = g.
public struct FixedPointOptions: Sendable, Equatable {
  public var method: FixedPointMethod
  public var tolerance: Double
  public var maxIterations: Int
  /// Whether stopping unconverged throws `ODEError.notConverged` instead of returning the last
  /// (Broyden: the best) iterate with `converged` false.
  public var requireConvergence: Bool

  public init(
    method: FixedPointMethod = .anderson(memory: 5, mixing: 1), tolerance: Double = 1e-4,
    maxIterations: Int = 50, requireConvergence: Bool = false
  ) {
    self.method = method
    self.tolerance = tolerance
    self.maxIterations = maxIterations
    self.requireConvergence = requireConvergence
  }

  func validate() throws {
    guard tolerance > 0, tolerance.isFinite else {
      throw ODEError.invalidOptions("fixed-point tolerance must be positive, got \(tolerance)")
    }
    guard maxIterations >= 1 else {
      throw ODEError.invalidOptions("fixed-point iterations must be at least 1")
    }
    if case .anderson(let m, let beta) = method, !(m >= 1 && beta > 0 && beta <= 1) {
      throw ODEError.invalidOptions("Anderson needs memory ≥ 1 and mixing in (0, 1]")
    }
    if case .broyden(let m) = method, m < 1 {
      throw ODEError.invalidOptions("Broyden needs memory ≥ 1")
    }
  }
}

/// Where a fixed-point search ended.
public struct FixedPointResult {
  /// The last iterate (Broyden: the one with the lowest residual), F's evaluation at which had the
  /// reported residual.
  public let value: Tensor
  /// Evaluations of F.
  public let iterations: Int
  /// ‖F(z) − z‖ / ‖F(z)‖ at `value`.
  public let relativeResidual: Double
  public var converged: Bool
}

/// Finds z = F(z) from `start` without recording anything (F's inputs are detached); the leading
/// axis of the state is the batch, over which Anderson's weights and Broyden's inverse Jacobian
/// are estimated sample by sample.
///
/// One host read per iteration (the residual norms and, for Anderson, its new inner products,
/// for Broyden, its update's denominators); memory holds at most `memory` pairs of iterates or
/// updates. A non-finite residual is an error naming the iteration, never a silently wrong
/// answer.
public func findFixedPoint(
  _ f: (Tensor) throws -> Tensor, from start: Tensor, options: FixedPointOptions
) throws -> FixedPointResult {
  try options.validate()
  guard start.rank >= 1, start.shape[0] >= 1 else {
    throw TensorError.invalidShape(
      op: "findFixedPoint", shape: start.shape, reason: "the state needs a batch axis")
  }
  let batch = start.shape[0]
  let width = start.count / batch
  var z = start.detached
  /// The search's result after `k` evaluations, returning `z` of relative residual `relative`.
  func result(_ k: Int, _ z: Tensor, relative: Double) throws -> FixedPointResult {
    if relative > options.tolerance && options.requireConvergence {
      throw ODEError.notConverged(
        what: "the fixed-point search", evaluations: k, residual: relative)
    }
    return FixedPointResult(
      value: z, iterations: k, relativeResidual: relative,
      converged: relative <= options.tolerance)
  }
  /// The result at evaluation `k` of F at z, whose ‖F(z) − z‖² and ‖F(z)‖² are `residual` and
  /// `scale`, or nil to go on.
  func finished(_ k: Int, _ z: Tensor, residual: Double, scale: Double) throws
    -> FixedPointResult?
  {
    let relative = try relativeResidual(residual, scale, iteration: k)
    guard relative <= options.tolerance || k == options.maxIterations else { return nil }
    return try result(k, z, relative: relative)
  }
  switch options.method {
  case .iteration:
    for k in 1...options.maxIterations {
      let fz = try f(z).detached
      let (residual, scale) = try residualNorms(fz, z)
      if let result = try finished(k, z, residual: residual, scale: scale) { return result }
      z = fz
    }
  case .anderson(let memory, let mixing):
    var anderson = AndersonHistory(memory: memory, batch: batch, width: width)
    for k in 1...options.maxIterations {
      let fz = try f(z).detached.reshaped([batch, width])
      let g = try fz - z.reshaped([batch, width])
      // One read: the new inner products, whose g·g summed over the batch is ‖F(z) − z‖², and
      // ‖F(z)‖² per sample.
      let (products, fzSquares) = try anderson.innerProducts(with: g, scaleOf: fz)
      let residual = products.reduce(0) { $0 + $1.last! }
      let scale = fzSquares.reduce(0, +)
      if let result = try finished(k, z, residual: residual, scale: scale) { return result }
      anderson.append(z: try z.reshaped([batch, width]), fz: fz, g: g, products: products)
      z = try anderson.next(mixing: mixing).reshaped(start.shape)
    }
  case .broyden(let memory):
    var inverse = BroydenInverse(memory: memory, batch: batch, width: width)
    var flat = try z.reshaped([batch, width])
    var previous: (z: Tensor, g: Tensor)? = nil
    var best: (z: Tensor, relative: Double)? = nil
    var first = Double.infinity
    for k in 1...options.maxIterations {
      let fz = try f(flat.reshaped(start.shape)).detached.reshaped([batch, width])
      let g = try fz - flat
      let update = try previous.map {
        try inverse.proposedUpdate(dz: flat - $0.z, dg: g - $0.g)
      }
      // One read: ‖F(z) − z‖², ‖F(z)‖² and the update's per-sample denominators.
      var pieces = [try (g * g).sum().reshaped([1]), try (fz * fz).sum().reshaped([1])]
      if let update { pieces.append(try update.denominators.reshaped([batch])) }
      let read = try Tensor.concat(pieces, axis: 0).toDoubles()
      let relative = try relativeResidual(read[0], read[1], iteration: k)
      if k == 1 { first = relative }
      if relative < best?.relative ?? .infinity { best = (flat, relative) }
      if relative <= options.tolerance || k == options.maxIterations
        || relative > FixedPointMethod.broydenDivergence * first, let best
      {
        return try result(k, best.z.reshaped(start.shape), relative: best.relative)
      }
      if let update {
        try inverse.append(
          numerator: update.numerator, v: update.v, denominators: Array(read[2...]))
      }
      previous = (flat, g)
      flat = try flat - inverse.times(g)
    }
  }
  preconditionFailure("the loops return at maxIterations")
}

/// ‖F(z) − z‖² and ‖F(z)‖² over the whole batch, read in one transfer.
private func residualNorms(_ fz: Tensor, _ z: Tensor) throws -> (Double, Double) {
  let d = try fz - z
  let both = try Tensor.concat(
    [try (d * d).sum().reshaped([1]), try (fz * fz).sum().reshaped([1])], axis: 0
  ).toDoubles()
  return (both[0], both[1])
}

private func relativeResidual(_ residual: Double, _ scale: Double, iteration: Int) throws
  -> Double
{
  guard residual.isFinite, scale.isFinite else {
    throw ODEError.nonFiniteIterate(what: "the fixed-point residual", iteration: iteration)
  }
  return (residual / max(scale, .leastNormalMagnitude)).squareRoot()
}
