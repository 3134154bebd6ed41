import DiffEqCore
import Foundation

/// The synthetic spirals of the Neural ODE paper's latent-ODE experiment (torchdiffeq's
/// `examples/latent_ode.py`, `generate_spiral2d`): two Archimedean spirals over a grid of
/// `gridPoints` times on [0, 6π], a = 0, b = 0.3,
/// - counter-clockwise: r = a + b·t, (r cos t + 5, r sin t);
/// - clockwise: s = 6π + 1 − t, r = a + 50b/s, (r cos s − 5, r sin s).
///
/// Each series picks a direction (a fair coin) and a window of `windowPoints` consecutive grid
/// times starting at a uniform index in [windowPoints, gridPoints − windowPoints), as the
/// example does; unlike the example, whose samples are regular, each time of the window is
/// observed with probability `keep` (at least four of them), so the sampling is irregular, and
/// each observation gets N(0, noise²) added to both coordinates. Times are the window's
/// (the example's `samp_ts`: 0 at the window's start). Everything is drawn from `seed`.
public struct Spirals: Sendable {
  public var count = 500
  public var gridPoints = 1000
  public var windowPoints = 100
  public var keep = 0.5
  public var noise = 0.3
  public var seed: UInt64 = 0

  public init(seed: UInt64 = 0) { self.seed = seed }

  /// The noisy, irregularly observed series and, with the same ids, the noiseless spirals at
  /// every time of each series' window (the truth a plot draws).
  public func generate() throws -> (observed: TimeSeriesDataset, truth: TimeSeriesDataset) {
    guard count >= 1, windowPoints >= 4, gridPoints > 2 * windowPoints, keep > 0, keep <= 1,
      noise >= 0, noise.isFinite
    else {
      throw DatasetError.invalidArgument(
        "spirals: count \(count), grid \(gridPoints), window \(windowPoints), keep \(keep), noise \(noise) out of range"
      )
    }
    let stop = 6 * Double.pi
    let (a, b) = (0.0, 0.3)
    let grid = (0..<gridPoints).map { stop * Double($0) / Double(gridPoints - 1) }
    func point(_ t: Double, clockwise: Bool) -> [Double] {
      if clockwise {
        let s = stop + 1 - t
        let r = a + b * 50 / s
        return [r * cos(s) - 5, r * sin(s)]
      }
      let r = a + b * t
      return [r * cos(t) + 5, r * sin(t)]
    }
    var rng = RandomState(seed: seed)
    var observed: [TimeSeries] = []
    var truth: [TimeSeries] = []
    for k in 0..<count {
      let clockwise = rng.nextUniform() < 0.5
      let span = gridPoints - 2 * windowPoints
      let start = windowPoints + Int(rng.next() % UInt64(span))
      var kept: [Int] = []
      while kept.count < 4 {
        kept = (0..<windowPoints).filter { _ in rng.nextUniform() < keep }
      }
      let id = "\(k)\(clockwise ? "cw" : "ccw")"
      truth.append(
        TimeSeries(
          id: id, times: Array(grid[..<windowPoints]),
          values: (0..<windowPoints).map { point(grid[start + $0], clockwise: clockwise) }))
      observed.append(
        TimeSeries(
          id: id, times: kept.map { grid[$0] },
          values: kept.map { j in
            point(grid[start + j], clockwise: clockwise).map { $0 + noise * rng.nextNormal() }
          }))
    }
    return (
      try TimeSeriesDataset(name: "spirals", dimension: 2, series: observed),
      try TimeSeriesDataset(name: "spirals (noiseless)", dimension: 2, series: truth)
    )
  }
}
