import DiffEqCore
import Kernels

/// A limited-memory approximation B of the inverse Jacobian of g(z) = F(z) − z, one per sample of
/// the batch: B = −I + Σᵢ uᵢ vᵢᵀ over the last `memory` rank-one updates (the rows of each uᵢ and
/// vᵢ, [batch, width], belong to their samples), as in torchdeq's `broyden_find_root`.
///
/// Starting from B = −I, the first step −B·g = F(z) − z is a plain fixed-point iteration. Each
/// update is Broyden's "good" one, B ← B + (Δz − BΔg)(ΔzᵀB) / (ΔzᵀBΔg), which makes the new B
/// map Δg to Δz. Everything stays on the device but the per-sample denominators, which ride on
/// the search's one read per iteration.
package struct BroydenInverse {
  let memory: Int
  let batch: Int
  let width: Int
  var us: [Tensor] = []
  var vs: [Tensor] = []

  package init(memory: Int, batch: Int, width: Int) {
    self.memory = memory
    self.batch = batch
    self.width = width
  }

  /// B·x for x [batch, width]: −x + Σ uᵢ (vᵢ·x), the dot products per sample.
  package func times(_ x: Tensor) throws -> Tensor {
    var out = try -x
    for (u, v) in zip(us, vs) { out = try out + u * (v * x).sum(axes: [1], keepDims: true) }
    return out
  }

  /// Bᵀ·x: −x + Σ vᵢ (uᵢ·x).
  package func transposeTimes(_ x: Tensor) throws -> Tensor {
    var out = try -x
    for (u, v) in zip(us, vs) { out = try out + v * (u * x).sum(axes: [1], keepDims: true) }
    return out
  }

  /// The pieces of the update for the step Δz that changed the residual by Δg: the numerator
  /// Δz − BΔg, vᵀ = ΔzᵀB, and the per-sample denominators vᵀΔg ([batch, 1], to be read).
  package func proposedUpdate(dz: Tensor, dg: Tensor) throws -> (
    numerator: Tensor, v: Tensor, denominators: Tensor
  ) {
    let v = try transposeTimes(dz)
    return (try dz - times(dg), v, try (v * dg).sum(axes: [1], keepDims: true))
  }

  /// Appends u = numerator / denominator and v, dropping the oldest pair beyond `memory`. A
  /// sample whose denominator is zero or not finite keeps its B (its u row is zero, so the pair
  /// adds nothing for it), as torchdeq zeroes such rows.
  package mutating func append(numerator: Tensor, v: Tensor, denominators: [Double]) throws {
    let inverse = denominators.map { d in
      let r = 1 / d
      return d.isFinite && r.isFinite && abs(d) > 1e-30 ? r : 0
    }
    let scale = try Tensor(inverse, shape: [batch, 1], dtype: v.dtype, on: v.backend)
    if us.count == memory {
      us.removeFirst()
      vs.removeFirst()
    }
    us.append(try numerator * scale)
    vs.append(v)
  }
}
