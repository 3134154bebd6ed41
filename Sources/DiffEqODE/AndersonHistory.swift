import DiffEqCore
import Kernels

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
