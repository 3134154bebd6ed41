import DiffEqCore
import Foundation

/// A first-order system whose state is a list of tensors: one for an ODE's y, several for the
/// adjoint system [y, a, a_θ…]. `f(t, y)` returns dy/dt component by component.
typealias ODESystem = (Double, [Tensor]) throws -> [Tensor]

/// One accepted step, as the checkpointed adjoint replays it.
struct ODEStepRecord {
  var t: Double
  var h: Double
  /// The state at t (and, for NAG, the previous state in `previous`).
  var y: [Tensor]
  var previous: [Tensor]?
  /// Output times inside (t, t + h], as fractions θ of the step, with their index in the
  /// `times` given to `solve`.
  var outputs: [(index: Int, theta: Double)]
}

/// One accepted Runge–Kutta step with what its dense output reads (`ODEIntegrator.interpolate`):
/// the method of steps for delay equations takes delayed states from these.
struct ODEDenseStep {
  var t: Double
  var h: Double
  var y0: [Tensor]
  var y1: [Tensor]
  /// The stages `interpolate` reads, at the indices it reads them (others hold stage 0, so that a
  /// kept step holds no tensor its interpolant does not need).
  var stages: [[Tensor]]
  /// Output times inside (t, t + h], as in `ODEStepRecord`.
  var outputs: [(index: Int, theta: Double)]
}

/// Integrates an `ODESystem` forward in time with one of the `ODESolver`s, producing the state at
/// requested times: adaptive methods step freely and interpolate (dense output); fixed-step
/// methods split each interval into equal steps.
///
/// Stage inputs, solutions, interpolants and the NAG update are each one fused
/// `Tensor.linearCombination` per state component; an adaptive step reads one scalar (its error
/// norm) back to the host.
struct ODEIntegrator {
  let f: ODESystem
  let options: ODEOptions
  /// Components counted in the error norm (the adjoint's seminorm leaves out a_θ).
  let normComponents: Int
  /// The leading components `f` reads; the others are only integrated (the adjoint's a_θ, which
  /// no right-hand side depends on), so their stage inputs are never formed: `f` receives y's
  /// own values in their place.
  var readComponents = Int.max
  /// Called once per evaluation of f, for statistics.
  let onEvaluation: () -> Void
  /// Called per accepted step (accepted: true) or rejected step (false).
  let onStep: (Bool) -> Void
  /// When set, receives every accepted step (checkpointing).
  var recorder: ((ODEStepRecord) -> Void)? = nil
  /// When set, receives every accepted Runge–Kutta step with its dense output's data.
  var denseRecorder: ((ODEDenseStep) -> Void)? = nil
  /// Adaptive solvers: receives, at the end of a solve, the step size the controller proposes
  /// next, so a following solve of a similar system can start there instead of probing.
  var onFinalStepProposal: ((Double) -> Void)? = nil
  /// Adaptive solvers: checked after every accepted step with the new state and its derivative;
  /// true ends the solve there, every remaining output taking that state (a steady state). Such
  /// a solve also ends, rather than throws, at `maxSteps`.
  var isSteady: ((_ y: [Tensor], _ dydt: [Tensor]) throws -> Bool)? = nil

  func evaluate(_ t: Double, _ y: [Tensor]) throws -> [Tensor] {
    onEvaluation()
    let k = try f(t, y)
    guard k.count == y.count else {
      throw TensorError.invalidArgument(
        op: "odeint", reason: "the vector field returned \(k.count) components for \(y.count)")
    }
    for (ki, yi) in zip(k, y) where ki.shape != yi.shape {
      throw TensorError.shapeMismatch(op: "odeint vector field", lhs: yi.shape, rhs: ki.shape)
    }
    return k
  }

  /// The state at each of `times` (strictly increasing, all after t0), starting from y0 at t0.
  func solve(_ y0: [Tensor], from t0: Double, to times: [Double]) throws -> [[Tensor]] {
    // Fixed-step solves check y0 with their outputs, at their end; adaptive ones through their
    // first norm read (the initial step's, else the first step's error), which a NaN or infinity
    // in y0 makes non-finite.
    if times.isEmpty { try checkFinite([(t0, y0, "initial state")]) }
    var previousTime = t0
    for t in times {
      guard t > previousTime, t.isFinite else {
        throw ODEError.invalidTimes(
          "times must be finite and strictly increasing (\(previousTime) then \(t))")
      }
      previousTime = t
    }
    if times.isEmpty { return [] }
    switch options.solver {
    case .nag(let mu): return try solveNAG(y0, from: t0, to: times, momentum: mu)
    default:
      let tableau = options.solver.tableau!
      return options.solver.isAdaptive
        ? try solveAdaptive(y0, from: t0, to: times, tableau)
        : try solveFixed(y0, from: t0, to: times, tableau)
    }
  }

  // MARK: Runge–Kutta steps

  /// One explicit RK step: the new state, all stages, and (for embedded pairs) the error norm's
  /// squared sum and element count.
  func rungeKuttaStep(
    _ tableau: ButcherTableau, t: Double, h: Double, y: [Tensor], firstStage: [Tensor]?
  ) throws -> (y1: [Tensor], stages: [[Tensor]], errorSquares: Double, errorCount: Int) {
    var k = [try firstStage ?? evaluate(t, y)]
    var solution: [Tensor]? = nil
    for i in 1..<tableau.stages {
      // For FSAL tableaus the last stage input is the solution itself: formed in full, once.
      let isSolution = tableau.fsal && i == tableau.stages - 1
      let yi = try combine(
        y, k, weights: tableau.a[i], h: h, components: isSolution ? y.count : readComponents)
      if isSolution { solution = yi }
      k.append(try evaluate(t + tableau.c[i] * h, yi))
    }
    let y1 = try solution ?? combine(y, k, weights: tableau.b, h: h)
    var squares = 0.0
    var count = 0
    if let e = tableau.errorWeights {
      let terms = zip(e, k).filter { $0.0 != 0 }  // the same stages for every component
      let coefficients = terms.map { $0.0 * h }
      let components = 0..<min(normComponents, y.count)
      // Every component's error in one read: the step's one host synchronisation. Components
      // outside a seminorm are summed in the same read only to be checked: a NaN there makes the
      // error NaN, so that it is reported at this step rather than in the final result.
      let sums = try Tensor.scaledErrorSquaredSums(
        components.map { c in
          (
            try Tensor.linearCombination(terms.map { $0.1[c] }, coefficients).detached,
            y[c].detached, y1[c].detached
          )
        }
          + (components.upperBound..<y.count).map {
            (y1[$0].detached, y1[$0].detached, y1[$0].detached)
          },
        atol: options.atol, rtol: options.rtol)
      squares = sums[components].reduce(0, +)
      if !sums[components.upperBound...].allSatisfy(\.isFinite) { squares = .nan }
      count = components.reduce(0) { $0 + y[$1].count }
    }
    return (y1, k, squares, count)
  }

  /// y + h Σ_j weights[j]·k[j], component by component, skipping zero weights; components from
  /// `components` on are y's own (placeholders the right-hand side does not read).
  func combine(
    _ y: [Tensor], _ k: [[Tensor]], weights: [Double], h: Double, components: Int = .max
  ) throws -> [Tensor] {
    // The contributing stages and their coefficients are the same for every component, and one
    // terms array serves them all: small states make this bookkeeping cost more than the sums.
    var stages: [Int] = []
    stages.reserveCapacity(k.count)
    var coefficients: [Double] = [1]
    coefficients.reserveCapacity(k.count + 1)
    for (j, w) in zip(k.indices, weights) where w != 0 {
      stages.append(j)
      coefficients.append(h * w)
    }
    if stages.isEmpty { return y }
    var out: [Tensor] = []
    out.reserveCapacity(y.count)
    var terms: [Tensor] = []
    terms.reserveCapacity(stages.count + 1)
    for c in y.indices {
      guard c < components else {
        out.append(y[c])
        continue
      }
      terms.removeAll(keepingCapacity: true)
      terms.append(y[c])
      for j in stages { terms.append(k[j][c]) }
      out.append(try Tensor.linearCombination(terms, coefficients))
    }
    return out
  }

  /// The state at t + θh inside an accepted step: Dormand–Prince's own fourth-order continuous
  /// extension for dopri5, cubic Hermite interpolation (third order) otherwise.
  func interpolate(
    _ tableau: ButcherTableau, theta: Double, h: Double, y0: [Tensor], y1: [Tensor],
    stages k: [[Tensor]]
  ) throws -> [Tensor] {
    if theta == 1 { return y1 }
    let s = theta
    let s1 = 1 - s
    var terms: [(Int, Double)]  // (source, coefficient): -2 = y0, -1 = y1, i = stage i
    if tableau.name == "dopri5" {
      // Hairer's contd5: y0 + s r2 + s s1 r3 + s² s1 r4 + s² s1² r5, expanded.
      let d: [Double] = [
        -12715105075.0 / 11_282_082_432, 0, 87487479700.0 / 32_700_410_799,
        -10690763975.0 / 1_880_347_072, 701980252875.0 / 199_316_789_632,
        -1453857185.0 / 822_651_844, 69997945.0 / 29_380_423,
      ]
      let (a, b, c, e) = (s, s * s1, s * s * s1, s * s * s1 * s1)
      terms = [(-2, 1 - a + b - 2 * c), (-1, a - b + 2 * c)]
      for i in 0..<7 {
        var w = e * d[i]
        if i == 0 { w += b - c }
        if i == 6 { w -= c }
        if w != 0 { terms.append((i, h * w)) }
      }
    } else {
      // f(t + h) is the last stage for FSAL pairs.
      let h00 = 2 * s * s * s - 3 * s * s + 1
      let h10 = s * s * s - 2 * s * s + s
      let h01 = -2 * s * s * s + 3 * s * s
      let h11 = s * s * s - s * s
      terms = [(-2, h00), (-1, h01), (0, h * h10), (k.count - 1, h * h11)]
    }
    return try y0.indices.map { c in
      try Tensor.linearCombination(
        terms.map { $0.0 == -2 ? y0[c] : $0.0 == -1 ? y1[c] : k[$0.0][c] }, terms.map(\.1))
    }
  }

  /// An accepted step's dense-output data, keeping only the stages `interpolate` reads.
  func denseStep(
    _ tableau: ButcherTableau, t: Double, h: Double, y0: [Tensor],
    step: (y1: [Tensor], stages: [[Tensor]], errorSquares: Double, errorCount: Int),
    outputs: [(index: Int, theta: Double)]
  ) -> ODEDenseStep {
    var k = step.stages
    if tableau.name == "dopri5" {
      k[1] = k[0]  // contd5's weight of stage 2 is zero
    } else {
      k = [k[0], k[k.count - 1]]  // Hermite reads the first and the last stage
    }
    return ODEDenseStep(t: t, h: h, y0: y0, y1: step.y1, stages: k, outputs: outputs)
  }

  // MARK: Adaptive

  func solveAdaptive(
    _ y0: [Tensor], from t0: Double, to times: [Double], _ tableau: ButcherTableau
  ) throws -> [[Tensor]] {
    let q = Double(tableau.order)
    // Hairer's PI controller (DOPRI5's defaults, scaled by the order).
    let beta = 0.2 / q
    let alpha = 1 / q - 0.75 * beta
    var outputs: [[Tensor]] = []
    var t = t0
    var y = y0
    let tEnd = times.last!
    var k1 = try evaluate(t0, y0)
    var h = try options.firstStep ?? initialStep(t0, y0, k1, order: q)
    var previousError = 1e-4
    var rejectedLast = false
    var steps = 0
    var next = 0
    var cutProposal: Double? = nil
    while next < times.count {
      if steps >= options.maxSteps {
        // A search for a steady state ends at its cap with the state it reached (its caller
        // reports it as not converged); any other solve must reach its times.
        guard isSteady != nil else { throw ODEError.maxStepsReached(steps: steps, t: t) }
        while outputs.count < times.count { outputs.append(y) }
        return outputs
      }
      steps += 1
      // The last step is cut to end at tEnd; the controller's own proposal is kept for the
      // next solve, which the cut step would understate.
      if tEnd - t < h { cutProposal = h }
      h = min(h, tEnd - t)
      if h < options.minStepSize * max(1, Swift.abs(t)) {
        throw ODEError.stepSizeUnderflow(t: t, h: h)
      }
      let step = try rungeKuttaStep(tableau, t: t, h: h, y: y, firstStage: k1)
      let error = (step.errorSquares / Double(max(1, step.errorCount))).squareRoot()
      guard error.isFinite else {
        // Only now is y0 read on its own, to name it when it is the cause.
        if t == t0 { try checkFinite([(t0, y0, "initial state")]) }
        throw ODEError.nonFinite(t: t, what: "the error estimate of a step of size \(h)")
      }
      if error <= 1 {
        onStep(true)
        var inside: [(Int, Double)] = []
        while next < times.count && times[next] <= t + h * (1 + 1e-12) {
          // An output at the step's end (up to rounding of t + h) is the step's solution.
          let atEnd = Swift.abs(times[next] - (t + h)) <= 1e-12 * max(1, Swift.abs(t + h))
          let theta = atEnd ? 1 : min(1, (times[next] - t) / h)
          outputs.append(
            try interpolate(tableau, theta: theta, h: h, y0: y, y1: step.y1, stages: step.stages))
          inside.append((next, theta))
          next += 1
        }
        recorder?(ODEStepRecord(t: t, h: h, y: y, previous: nil, outputs: inside))
        denseRecorder?(denseStep(tableau, t: t, h: h, y0: y, step: step, outputs: inside))
        t = next == times.count ? tEnd : t + h
        y = step.y1
        k1 = tableau.fsal ? step.stages[tableau.stages - 1] : try evaluate(t, y)
        if next < times.count, let isSteady, try isSteady(y, k1) {
          while outputs.count < times.count { outputs.append(y) }
          return outputs
        }
        var factor =
          options.safety * Foundation.pow(max(error, 1e-10), -alpha)
          * Foundation.pow(previousError, beta)
        factor = min(options.maxFactor, max(options.minFactor, factor))
        if rejectedLast { factor = min(1, factor) }
        h *= factor
        previousError = max(error, 1e-4)
        rejectedLast = false
      } else {
        onStep(false)
        h *= max(options.minFactor, options.safety * Foundation.pow(error, -1 / q))
        rejectedLast = true
        cutProposal = nil  // that proposal was too large after all
      }
    }
    onFinalStepProposal?(cutProposal ?? h)
    return outputs
  }

  /// Hairer, Nørsett & Wanner's starting step (Solving ODEs I, II.4): from the sizes of y0, f0 and
  /// a finite-difference estimate of y'', so the first step neither crawls nor explodes.
  func initialStep(_ t0: Double, _ y0: [Tensor], _ f0: [Tensor], order q: Double) throws -> Double {
    // The RMS norms of several states, scaled by y0, in one read.
    let components = 0..<max(1, min(normComponents, y0.count))
    let elements = Double(components.reduce(0) { $0 + y0[$1].count })
    // `checked` components are summed in the same read only for their finiteness: a NaN makes
    // the first norm NaN.
    func norms(_ xs: [[Tensor]], checking checked: [Tensor] = []) throws -> [Double] {
      let sums = try Tensor.scaledErrorSquaredSums(
        xs.flatMap { x in components.map { (x[$0].detached, y0[$0].detached, y0[$0].detached) } }
          + checked.map { ($0.detached, $0.detached, $0.detached) },
        atol: options.atol, rtol: options.rtol)
      let allFinite = sums[(xs.count * components.count)...].allSatisfy(\.isFinite)
      return xs.indices.map { i in
        let part = sums[(i * components.count)..<((i + 1) * components.count)]
        return i == 0 && !allFinite ? .nan : (part.reduce(0, +) / max(1, elements)).squareRoot()
      }
    }
    let d = try norms([y0, f0], checking: Array(y0[components.upperBound...]))
    let (d0, d1) = (d[0], d[1])
    // This is the solve's first read: it checks y0 (and f(t0, y0)) for it.
    guard d0.isFinite else { throw ODEError.nonFinite(t: t0, what: "initial state") }
    guard d1.isFinite else {
      throw ODEError.nonFinite(t: t0, what: "the vector field at the initial state")
    }
    let h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1
    let y1 = try combine(y0, [f0], weights: [1], h: h0, components: readComponents)
    let f1 = try evaluate(t0 + h0, y1)
    let diff = try zip(f1, f0).map { try $0 - $1 }
    let d2 = try norms([diff])[0] / h0
    let h1 =
      max(d1, d2) <= 1e-15
      ? max(1e-6, h0 * 1e-3) : Foundation.pow(0.01 / max(d1, d2), 1 / (q + 1))
    return min(100 * h0, h1)
  }

  // MARK: Fixed step

  /// The equal steps that split [a, b] no longer than the configured step size; more than
  /// `maxSteps` is an error, not an endless (or, past Int.max, trapping) loop.
  func stepCount(_ a: Double, _ b: Double, t0: Double, tEnd: Double) throws -> Int {
    let h = options.stepSize ?? options.steps.map { (tEnd - t0) / Double($0) }
    guard let h else { return 1 }
    let n = ((b - a) / h - 1e-9).rounded(.up)
    guard n.isFinite, n <= Double(options.maxSteps) else {
      throw ODEError.maxStepsReached(steps: options.maxSteps, t: a)
    }
    return max(1, Int(n))
  }

  func solveFixed(
    _ y0: [Tensor], from t0: Double, to times: [Double], _ tableau: ButcherTableau
  ) throws -> [[Tensor]] {
    var outputs: [[Tensor]] = []
    var t = t0
    var y = y0
    for (index, target) in times.enumerated() {
      let n = try stepCount(t, target, t0: t0, tEnd: times.last!)
      let h = (target - t) / Double(n)
      for i in 0..<n {
        let step = try rungeKuttaStep(tableau, t: t, h: h, y: y, firstStage: nil)
        onStep(true)
        recorder?(
          ODEStepRecord(t: t, h: h, y: y, previous: nil, outputs: i == n - 1 ? [(index, 1)] : []))
        denseRecorder?(
          denseStep(
            tableau, t: t, h: h, y0: y, step: step, outputs: i == n - 1 ? [(index, 1)] : []))
        y = step.y1
        t = i == n - 1 ? target : t + h
      }
      outputs.append(y)
    }
    try checkFinite([(t0, y0, "initial state")] + zip(times, outputs).map { ($0, $1, "the state") })
    return outputs
  }

  // MARK: NAG

  /// The Nesterov-accelerated two-step method; see `NAGStepper` for the formula.
  func solveNAG(_ y0: [Tensor], from t0: Double, to times: [Double], momentum mu: Double) throws
    -> [[Tensor]]
  {
    var outputs: [[Tensor]] = []
    var t = t0
    var y = y0
    var previous: [Tensor]? = nil
    for (index, target) in times.enumerated() {
      let n = try stepCount(t, target, t0: t0, tEnd: times.last!)
      let h = (target - t) / Double(n)
      for i in 0..<n {
        recorder?(
          ODEStepRecord(
            t: t, h: h, y: y, previous: previous, outputs: i == n - 1 ? [(index, 1)] : []))
        let next = try NAGStepper(momentum: mu).step(
          t: t, h: h, y: y, previous: previous, evaluate: evaluate)
        onStep(true)
        previous = y
        y = next
        t = i == n - 1 ? target : t + h
      }
      outputs.append(y)
    }
    try checkFinite([(t0, y0, "initial state")] + zip(times, outputs).map { ($0, $1, "the state") })
    return outputs
  }

  /// Throws `nonFinite` at the first of `states` with a NaN or infinite element, after one read
  /// for all of them: a fixed-step solve checks its start and outputs once, at its end, rather
  /// than synchronising with the device at each (a NaN propagates to every later state anyway).
  func checkFinite(_ states: [(t: Double, y: [Tensor], what: String)]) throws {
    let sums = try Tensor.scaledErrorSquaredSums(
      states.flatMap { state in state.y.map { ($0.detached, $0.detached, $0.detached) } },
      atol: 1, rtol: 0)
    var next = 0
    for state in states {
      let part = sums[next..<(next + state.y.count)]
      next += state.y.count
      guard part.allSatisfy(\.isFinite) else {
        throw ODEError.nonFinite(t: state.t, what: state.what)
      }
    }
  }
}

/// The Nesterov-accelerated gradient (NAG) ODE solver, written as a two-step linear multistep
/// method with momentum μ ∈ [0, 1):
///
///     z_n     = y_n + μ (y_n − y_{n−1})                (look-ahead)
///     y_{n+1} = z_n + (1 − μ) h f(t_n + μh, z_n)
///
/// Its characteristic polynomial ρ(ζ) = ζ² − (1 + μ)ζ + μ = (ζ − 1)(ζ − μ) has roots 1 and μ, so
/// it is zero-stable exactly when |μ| < 1; consistency needs σ(1) = ρ'(1) = 1 − μ, which is why
/// the step is scaled to h' = (1 − μ)h. z_n ≈ y(t_n + μh), hence f is evaluated there. The method
/// is first order; μ = 0 is forward Euler, which is also its start-up step.
public struct NAGStepper {
  public let momentum: Double

  public init(momentum: Double) { self.momentum = momentum }

  func step(
    t: Double, h: Double, y: [Tensor], previous: [Tensor]?,
    evaluate: (Double, [Tensor]) throws -> [Tensor]
  ) throws -> [Tensor] {
    guard let previous else {
      let k = try evaluate(t, y)
      return try zip(y, k).map { try Tensor.linearCombination([$0, $1], [1, h]) }
    }
    let mu = momentum
    let z = try zip(y, previous).map { try Tensor.linearCombination([$0, $1], [1 + mu, -mu]) }
    let k = try evaluate(t + mu * h, z)
    // One launch per component: (1 + μ) y_n − μ y_{n−1} + (1 − μ) h k.
    return try y.indices.map { c in
      try Tensor.linearCombination([y[c], previous[c], k[c]], [1 + mu, -mu, (1 - mu) * h])
    }
  }
}
