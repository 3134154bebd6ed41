/// The coefficients of an explicit Runge–Kutta method:
/// k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j),  y₁ = y + h Σ b_i k_i,
/// and for embedded pairs the error estimate e = h Σ (b_i − b̂_i) k_i.
public struct ButcherTableau: Sendable {
  public let name: String
  public let c: [Double]
  /// Row i holds a_i0 … a_i(i−1).
  public let a: [[Double]]
  public let b: [Double]
  /// b − b̂ for embedded pairs; nil for fixed-step methods.
  public let errorWeights: [Double]?
  /// The order of the propagated solution.
  public let order: Int
  /// First Same As Last: the final stage is f(t + h, y₁), reusable as the next step's first.
  public let fsal: Bool

  public var stages: Int { c.count }

  public static let euler = ButcherTableau(
    name: "euler", c: [0], a: [[]], b: [1], errorWeights: nil, order: 1, fsal: false)

  public static let midpoint = ButcherTableau(
    name: "midpoint", c: [0, 0.5], a: [[], [0.5]], b: [0, 1], errorWeights: nil, order: 2,
    fsal: false)

  /// Heun's method (explicit trapezoid).
  public static let heun = ButcherTableau(
    name: "heun", c: [0, 1], a: [[], [1]], b: [0.5, 0.5], errorWeights: nil, order: 2, fsal: false)

  /// The classic fourth-order method.
  public static let rk4 = ButcherTableau(
    name: "rk4", c: [0, 0.5, 0.5, 1], a: [[], [0.5], [0, 0.5], [0, 0, 1]],
    b: [1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6], errorWeights: nil, order: 4, fsal: false)

  /// Kutta's 3/8 rule, the fourth-order method torchdiffeq's `rk4` takes (its
  /// `rk4_alt_step_func`): the same order as `rk4`, different stages, so its solutions differ
  /// from `rk4`'s in the fifth-order terms.
  public static let rk38 = ButcherTableau(
    name: "rk38", c: [0, 1.0 / 3, 2.0 / 3, 1], a: [[], [1.0 / 3], [-1.0 / 3, 1], [1, -1, 1]],
    b: [0.125, 0.375, 0.375, 0.125], errorWeights: nil, order: 4, fsal: false)

  /// Bogacki–Shampine 3(2).
  public static let bosh3 = ButcherTableau(
    name: "bosh3", c: [0, 0.5, 0.75, 1],
    a: [[], [0.5], [0, 0.75], [2.0 / 9, 1.0 / 3, 4.0 / 9]],
    b: [2.0 / 9, 1.0 / 3, 4.0 / 9, 0],
    errorWeights: [2.0 / 9 - 7.0 / 24, 1.0 / 3 - 0.25, 4.0 / 9 - 1.0 / 3, -0.125],
    order: 3, fsal: true)

  /// Dormand–Prince 5(4).
  public static let dopri5 = ButcherTableau(
    name: "dopri5", c: [0, 0.2, 0.3, 0.8, 8.0 / 9, 1, 1],
    a: [
      [], [0.2], [3.0 / 40, 9.0 / 40], [44.0 / 45, -56.0 / 15, 32.0 / 9],
      [19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729],
      [9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656],
      [35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84],
    ],
    b: [35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0],
    errorWeights: [
      35.0 / 384 - 5179.0 / 57600, 0, 500.0 / 1113 - 7571.0 / 16695, 125.0 / 192 - 393.0 / 640,
      -2187.0 / 6784 + 92097.0 / 339200, 11.0 / 84 - 187.0 / 2100, -1.0 / 40,
    ],
    order: 5, fsal: true)

  /// Tsitouras 5(4) (2011), the coefficients of its Table 1.
  public static let tsit5: ButcherTableau = {
    let c = [0, 0.161, 0.327, 0.9, 0.9800255409045097, 1, 1]
    let a: [[Double]] = [
      [], [0.161], [-0.008480655492356989, 0.335480655492357],
      [2.897153057105493, -6.359448489975075, 4.3622954328695815],
      [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
      [
        5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
        -0.028269050394068383,
      ],
      [
        0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081,
        2.324710524099774,
      ],
    ]
    let b = a[6] + [0]
    let errorWeights = [
      -0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995, -0.1447110071732629,
      0.5823571654525552, -0.45808210592918697, 1.0 / 66,
    ]
    return ButcherTableau(
      name: "tsit5", c: c, a: a, b: b, errorWeights: errorWeights, order: 5, fsal: true)
  }()
}
