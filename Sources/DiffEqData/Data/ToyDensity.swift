import DiffEqCore
import Foundation
import Kernels

/// The 2-D densities of FFJORD's toy experiments (`toy_data.py`), sampled on the host from a
/// `RandomState`, so a seed gives the same points everywhere.
public enum ToyDensity: String, Sendable, NamedSetting {
  public static let settingName = "toy density"

  /// Two interleaved half circles (scikit-learn's make_moons, noise 0.1), ×2 − (1, 0.2).
  case twoMoons = "two-moons"
  /// Two concentric circles of radii 3 and 1.5 (make_circles, factor 0.5, noise 0.08, ×3).
  case circles
  /// Eight Gaussians (σ 0.5) on a circle of radius 4, all ÷1.414.
  case eightGaussians = "8gaussians"
  /// Five curved arms (radial σ 0.3, tangential σ 0.1, rate 0.25), ×2.
  case pinwheel
  /// A 4×4 checkerboard of uniform squares over [−4, 4]².
  case checkerboard
  /// Two interleaved spirals with noise 0.1.
  case twoSpirals = "2spirals"

  /// `count` points, row-major [count, 2]. The moons and circles draw their angles uniformly
  /// (scikit-learn spaces them evenly; with the noise the densities agree).
  public func sample(count: Int, rng: inout RandomState) -> [Double] {
    var out: [Double] = []
    out.reserveCapacity(2 * count)
    func normal() -> Double { rng.nextNormal() }
    func uniform() -> Double { rng.nextUniform() }
    for i in 0..<count {
      switch self {
      case .twoMoons:
        let a = Double.pi * uniform()
        let (x, y) = i % 2 == 0 ? (cos(a), sin(a)) : (1 - cos(a), 1 - sin(a) - 0.5)
        out += [2 * (x + 0.1 * normal()) - 1, 2 * (y + 0.1 * normal()) - 0.2]
      case .circles:
        let a = 2 * Double.pi * uniform()
        let r = i % 2 == 0 ? 1 : 0.5
        out += [3 * (r * cos(a) + 0.08 * normal()), 3 * (r * sin(a) + 0.08 * normal())]
      case .eightGaussians:
        let k = Int(rng.next() % 8)
        let angle = Double(k) * Double.pi / 4
        out += [
          (4 * cos(angle) + 0.5 * normal()) / 1.414, (4 * sin(angle) + 0.5 * normal()) / 1.414,
        ]
      case .pinwheel:
        let k = Int(rng.next() % 5)
        let f0 = 0.3 * normal() + 1
        let f1 = 0.1 * normal()
        let angle = Double(k) * 2 * Double.pi / 5 + 0.25 * exp(f0)
        out += [2 * (f0 * cos(angle) + f1 * sin(angle)), 2 * (-f0 * sin(angle) + f1 * cos(angle))]
      case .checkerboard:
        let x1 = 4 * uniform() - 2
        let x2 =
          uniform() - Double(rng.next() % 2) * 2
          + (floor(x1).truncatingRemainder(dividingBy: 2) + 2)
          .truncatingRemainder(dividingBy: 2)
        out += [2 * x1, 2 * x2]
      case .twoSpirals:
        let n = uniform().squareRoot() * 540 * 2 * Double.pi / 360
        let sign = i % 2 == 0 ? 1.0 : -1.0
        let x = sign * (-cos(n) * n + 0.5 * uniform()) / 3
        let y = sign * (sin(n) * n + 0.5 * uniform()) / 3
        out += [x + 0.1 * normal(), y + 0.1 * normal()]
      }
    }
    return out
  }

  /// A data set of `count` points drawn from `seed`.
  public func dataset(count: Int, seed: UInt64) throws -> TableDataset {
    var rng = RandomState(seed: seed)
    return try TableDataset(
      name: rawValue, columns: ["x", "y"], values: sample(count: count, rng: &rng))
  }
}
