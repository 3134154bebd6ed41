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
}

/// When a fixed-point search stops: at a relative residual ‖F(z) − z‖ / ‖F(z)‖ (over the whole
/// batch) of at most `tolerance`, or after `maxIterations` evaluations of F.
public struct FixedPointOptions: Sendable, Equatable {
  public var method: FixedPointMethod
  public var tolerance: Double
  public var maxIterations: Int

  public init(
    method: FixedPointMethod = .anderson(memory: 5, mixing: 1), tolerance: Double = 1e-4,
    maxIterations: Int = 50
  ) {
    self.method = method
    self.tolerance = tolerance
    self.maxIterations = maxIterations
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
  }
}

/// Where a fixed-point search ended.
public struct FixedPointResult {
  /// The last iterate, F's evaluation at which had the reported residual.
  public let value: Tensor
  /// Evaluations of F.
  public let iterations: Int
  /// ‖F(z) − z‖ / ‖F(z)‖ at `value`.
  public let relativeResidual: Double
  public var converged: Bool
}

/// Finds z = F(z) from `start` without recording anything (F's inputs are detached); the leading
/// axis of the state is the batch, over which Anderson's weights are solved sample by sample.
///
/// One host read per iteration (the residual norms and, for Anderson, its new inner products);
/// memory holds at most `memory` pairs of iterates. A non-finite residual is an error naming the
/// iteration, never a silently wrong answer.
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
  /// The result at evaluation `k` of F at z, whose ‖F(z) − z‖² and ‖F(z)‖² are `residual` and
  /// `scale`, or nil to go on.
  func finished(_ k: Int, _ z: Tensor, residual: Double, scale: Double) throws
    -> FixedPointResult?
  {
    let relative = try relativeResidual(residual, scale, iteration: k)
    guard relative <= options.tolerance || k == options.maxIterations else { return nil }
    return FixedPointResult(
      value: z, iterations: k, relativeResidual: relative,
      converged: relative <= options.tolerance)
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
    throw ODEError.nonFinite(t: Double(iteration), what: "the fixed-point residual")
  }
  return (residual / max(scale, .leastNormalMagnitude)).squareRoot()
}

/// The last `memory` iterates zᵢ, F(zᵢ), their residuals gᵢ = F(zᵢ) − zᵢ (each [batch, width]),
/// and the per-sample Gram matrix of the residuals, kept on the host.
struct AndersonHistory {
  let memory: Int
  let batch: Int
  let width: Int
  var zs: [Tensor] = []
  var fzs: [Tensor] = []
  var gs: [Tensor] = []
  /// gram[b][i][j] = gᵢ[b]·gⱼ[b] over the current history.
  var gram: [[[Double]]]

  init(memory: Int, batch: Int, width: Int) {
    self.memory = memory
    self.batch = batch
    self.width = width
    gram = Array(repeating: [], count: batch)
  }

  /// Per sample, g·gᵢ for each gᵢ kept once the oldest is dropped, then g·g ([batch][history +
  /// 1]), and `fz`·`fz` ([batch]), in one read.
  func innerProducts(with g: Tensor, scaleOf fz: Tensor) throws -> ([[Double]], [Double]) {
    let kept = Array(gs.suffix(memory - 1))
    let columns = try (kept + [g]).map { try ($0 * g).sum(axes: [1]).reshaped([1, batch]) }
    let squares = try (fz * fz).sum(axes: [1]).reshaped([1, batch])
    let flat = try Tensor.concat(columns + [squares], axis: 0).toDoubles()
    let products = (0..<batch).map { b in (0..<columns.count).map { flat[$0 * batch + b] } }
    return (products, Array(flat[(columns.count * batch)...]))
  }

  mutating func append(z: Tensor, fz: Tensor, g: Tensor, products: [[Double]]) {
    if gs.count == memory {
      zs.removeFirst()
      fzs.removeFirst()
      gs.removeFirst()
      for b in 0..<batch {
        gram[b].removeFirst()
        for i in gram[b].indices { gram[b][i].removeFirst() }
      }
    }
    zs.append(z)
    fzs.append(fz)
    gs.append(g)
    for b in 0..<batch {
      let row = products[b]
      for i in gram[b].indices { gram[b][i].append(row[i]) }
      gram[b].append(row)
    }
  }

  /// β Σ αᵢ F(zᵢ) + (1 − β) Σ αᵢ zᵢ with per-sample weights α minimising ‖Σ αᵢ gᵢ‖, Σ αᵢ = 1.
  func next(mixing beta: Double) throws -> Tensor {
    let m = gs.count
    var alphas = [Double](repeating: 0, count: batch * m)
    for b in 0..<batch {
      let a = Self.weights(gram[b])
      for i in 0..<m { alphas[b * m + i] = a[i] }
    }
    let weights = try Tensor(alphas, shape: [batch, m], dtype: gs[0].dtype, on: gs[0].backend)
    var out: Tensor? = nil
    for i in 0..<m {
      let alpha = try weights.slice(axis: 1, i..<(i + 1))
      let term =
        beta == 1
        ? try fzs[i] * alpha : try (fzs[i] * beta + zs[i] * (1 - beta)) * alpha
      out = try out.map { try $0 + term } ?? term
    }
    return out!
  }

  /// The α minimising αᵀHα with Σ α = 1 for the Gram matrix H (regularised by 1e-8·trace, so a
  /// repeated residual does not make it singular): H α = μ 1, then normalised.
  static func weights(_ h: [[Double]]) -> [Double] {
    let m = h.count
    let trace = (0..<m).reduce(0) { $0 + h[$1][$1] }
    var a = h
    for i in 0..<m { a[i][i] += 1e-8 * max(trace, 1e-300) }
    var rhs = [Double](repeating: 1, count: m)
    // Gaussian elimination with partial pivoting on an m×m system (m ≤ memory).
    for col in 0..<m {
      let pivot = (col..<m).max { abs(a[$0][col]) < abs(a[$1][col]) }!
      a.swapAt(col, pivot)
      rhs.swapAt(col, pivot)
      guard a[col][col] != 0 else { continue }
      for row in (col + 1)..<m {
        let factor = a[row][col] / a[col][col]
        for k in col..<m { a[row][k] -= factor * a[col][k] }
        rhs[row] -= factor * rhs[col]
      }
    }
    var x = [Double](repeating: 0, count: m)
    for row in stride(from: m - 1, through: 0, by: -1) {
      var s = rhs[row]
      for k in (row + 1)..<m { s -= a[row][k] * x[k] }
      x[row] = a[row][row] != 0 ? s / a[row][row] : 0
    }
    let total = x.reduce(0, +)
    guard total.isFinite, abs(total) > 1e-300 else {
      // Degenerate history: take the newest iterate.
      return (0..<m).map { $0 == m - 1 ? 1 : 0 }
    }
    return x.map { $0 / total }
  }
}
