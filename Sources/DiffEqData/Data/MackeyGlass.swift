import Foundation

/// The Mackey–Glass delay equation dx/dt = β x(t − τ) / (1 + x(t − τ)ⁿ) − γ x(t), a standard
/// chaotic time series (β = 0.2, γ = 0.1, n = 10, τ = 17 by default).
public struct MackeyGlass: Sendable {
  public var beta = 0.2
  public var gamma = 0.1
  public var exponent = 10.0
  public var delay = 17.0
  /// x(t) for t ≤ 0.
  public var initialValue = 1.2

  public init() {}

  /// x at t = 0, spacing, 2·spacing, … (`count` values, after dropping the first `transient`
  /// time units), integrated on the host in Float64 by RK4 with step `spacing / substeps`, the
  /// delayed values of the half steps linearly interpolated between stored points.
  public func series(count: Int, spacing: Double = 1, transient: Double = 0, substeps: Int = 10)
    -> [Double]
  {
    precondition(count >= 0 && spacing > 0 && substeps >= 1 && delay > 0)
    let h = spacing / Double(substeps)
    let lag = delay / h
    var path: [Double] = [initialValue]  // x at k·h, k = 0, 1, …
    func past(_ k: Double) -> Double {  // x at k·h (k fractional; ≤ 0 is the constant history)
      if k <= 0 { return initialValue }
      let i = Int(k)
      let w = k - Double(i)
      return w == 0 ? path[i] : (1 - w) * path[i] + w * path[min(i + 1, path.count - 1)]
    }
    func f(_ x: Double, _ xd: Double) -> Double {
      beta * xd / (1 + pow(xd, exponent)) - gamma * x
    }
    let skip = Int((transient / spacing).rounded())
    let total = (skip + count - 1) * substeps
    for k in 0..<max(0, total) {
      let x = path[k]
      let t = Double(k)
      let d0 = past(t - lag)
      let dm = past(t + 0.5 - lag)
      let d1 = past(t + 1 - lag)
      let k1 = f(x, d0)
      let k2 = f(x + 0.5 * h * k1, dm)
      let k3 = f(x + 0.5 * h * k2, dm)
      let k4 = f(x + h * k3, d1)
      path.append(x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
    }
    return (skip..<(skip + count)).map { path[$0 * substeps] }
  }
}
