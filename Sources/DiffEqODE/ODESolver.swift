import Kernels

/// The integration methods `odeint` offers.
public enum ODESolver: Equatable, Sendable, CustomStringConvertible {
  case euler, midpoint, heun, rk4
  /// Kutta's 3/8 rule (torchdiffeq's `rk4`).
  case rk38
  /// Nesterov-accelerated first-order two-step method with momentum μ ∈ [0, 1); see `NAGStepper`.
  case nag(momentum: Double)
  case bosh3, dopri5, tsit5

  /// Parses `euler`, `midpoint`, `heun`, `rk4`, `rk38`, `nag` (μ = 0.5), `nag:0.9`, `bosh3`,
  /// `dopri5`, `tsit5`.
  public init(parsing s: String) throws {
    switch s.lowercased() {
    case "euler": self = .euler
    case "midpoint": self = .midpoint
    case "heun": self = .heun
    case "rk4": self = .rk4
    case "rk38": self = .rk38
    case "bosh3": self = .bosh3
    case "dopri5": self = .dopri5
    case "tsit5": self = .tsit5
    case "nag": self = .nag(momentum: 0.5)
    case let n where n.hasPrefix("nag:"):
      guard let mu = Double(n.dropFirst(4)) else {
        throw ODEError.invalidOptions("bad momentum in \(s)")
      }
      self = .nag(momentum: mu)
    default:
      throw ODEError.invalidOptions(
        "unknown solver \(s) (euler, midpoint, heun, rk4, rk38, nag[:μ], bosh3, dopri5, tsit5)")
    }
  }

  public var description: String {
    switch self {
    case .nag(let mu): return "nag:\(mu)"
    default: return tableau?.name ?? "?"
    }
  }
}

/// Settings spell a solver as `init(parsing:)` reads it and `description` writes it.
extension ODESolver: SpelledSetting {}

extension ODESolver {
  /// The Runge–Kutta coefficients, for every solver but NAG.
  public var tableau: ButcherTableau? {
    switch self {
    case .euler: return .euler
    case .midpoint: return .midpoint
    case .heun: return .heun
    case .rk4: return .rk4
    case .rk38: return .rk38
    case .bosh3: return .bosh3
    case .dopri5: return .dopri5
    case .tsit5: return .tsit5
    case .nag: return nil
    }
  }

  /// Whether the step size is chosen by an error estimate.
  public var isAdaptive: Bool { tableau?.errorWeights != nil }

  /// The order of convergence.
  public var order: Int { tableau?.order ?? 1 }
}

/// How `odeint` integrates and what it refuses.
public struct ODEOptions: Sendable {
  public var solver: ODESolver = .dopri5
  public var rtol = 1e-7
  public var atol = 1e-9
  /// Fixed-step solvers: the largest step; each interval between output times is split into
  /// equal steps no longer than this. Nil with `steps` nil means one step per interval.
  public var stepSize: Double? = nil
  /// Fixed-step solvers: the number of steps over [t0, tN] (sets `stepSize`).
  public var steps: Int? = nil
  /// Adaptive solvers: the first step (chosen by Hairer's algorithm when nil).
  public var firstStep: Double? = nil
  public var maxSteps = 100_000
  /// Steps smaller than this (relative to max(1, |t|)) are an error, not a stall.
  public var minStepSize = 1e-12
  public var safety = 0.9
  public var minFactor = 0.2
  public var maxFactor = 10.0

  public init(solver: ODESolver = .dopri5, rtol: Double = 1e-7, atol: Double = 1e-9) {
    self.solver = solver
    self.rtol = rtol
    self.atol = atol
  }

  public static func fixed(_ solver: ODESolver, steps: Int) -> ODEOptions {
    var o = ODEOptions(solver: solver)
    o.steps = steps
    return o
  }

  func validate() throws {
    guard rtol >= 0, atol >= 0, rtol + atol > 0, rtol.isFinite, atol.isFinite else {
      throw ODEError.invalidOptions(
        "tolerances must be non-negative and finite (rtol \(rtol), atol \(atol))")
    }
    if let h = stepSize, !(h > 0 && h.isFinite) {
      throw ODEError.invalidOptions("step size must be positive, got \(h)")
    }
    guard maxSteps >= 1 else { throw ODEError.invalidOptions("maxSteps must be at least 1") }
    if let n = steps, !(1...maxSteps).contains(n) {
      throw ODEError.invalidOptions("steps must lie in 1...\(maxSteps) (maxSteps), got \(n)")
    }
    guard safety > 0, safety <= 1, minFactor > 0, minFactor < 1, maxFactor > 1 else {
      throw ODEError.invalidOptions("safety in (0, 1], minFactor in (0, 1), maxFactor > 1")
    }
    if case .nag(let mu) = solver, !(mu >= 0 && mu < 1) {
      throw ODEError.invalidOptions("NAG momentum \(mu) must lie in [0, 1) for zero-stability")
    }
  }
}

/// Why a solve stopped.
public enum ODEError: Error, CustomStringConvertible, Equatable {
  case invalidTimes(String)
  case invalidOptions(String)
  case nonFinite(t: Double, what: String)
  case stepSizeUnderflow(t: Double, h: Double)
  case maxStepsReached(steps: Int, t: Double)
  /// An iterative search (a fixed point, a linear solve) met a NaN or infinity.
  case nonFiniteIterate(what: String, iteration: Int)
  /// A search asked to converge (`FixedPointOptions.requireConvergence`) reached its cap.
  case notConverged(what: String, evaluations: Int, residual: Double)

  public var description: String {
    switch self {
    case .invalidTimes(let s): return "invalid times: \(s)"
    case .invalidOptions(let s): return "invalid solver options: \(s)"
    case .nonFinite(let t, let what): return "\(what) is NaN or infinite at t = \(t)"
    case .stepSizeUnderflow(let t, let h): return "step size underflow at t = \(t) (h = \(h))"
    case .maxStepsReached(let n, let t): return "maximum of \(n) steps reached at t = \(t)"
    case .nonFiniteIterate(let what, let k): return "\(what) is NaN or infinite at iteration \(k)"
    case .notConverged(let what, let n, let r):
      return "\(what) did not converge: relative residual \(r) after \(n) evaluations"
    }
  }
}

/// Work done by a solve; the backward counts fill in when gradients are computed.
public final class ODEStatistics: CustomStringConvertible {
  public internal(set) var forwardEvaluations = 0
  public internal(set) var backwardEvaluations = 0
  public internal(set) var acceptedSteps = 0
  public internal(set) var rejectedSteps = 0
  public internal(set) var backwardAcceptedSteps = 0
  public internal(set) var backwardRejectedSteps = 0

  public init() {}

  func countStep(accepted: Bool, backward: Bool) {
    switch (accepted, backward) {
    case (true, false): acceptedSteps += 1
    case (false, false): rejectedSteps += 1
    case (true, true): backwardAcceptedSteps += 1
    case (false, true): backwardRejectedSteps += 1
    }
  }

  public var description: String {
    "NFE forward \(forwardEvaluations) backward \(backwardEvaluations), steps \(acceptedSteps) accepted \(rejectedSteps) rejected"
  }
}
