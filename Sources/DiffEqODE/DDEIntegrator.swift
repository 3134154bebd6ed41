import DiffEqCore
import Kernels

/// The past of a delay equation's solution that its right-hand side reads: the history before
/// t0 and the dense output of accepted steps after it, trimmed to the window [t − τ_max, t].
final class DelayWindow {
  let t0: Double
  let tableau: ButcherTableau
  let interpolator: ODEIntegrator
  /// y(s) for s ≤ t0.
  let history: (Double) throws -> Tensor
  let shape: [Int]
  /// Whether the history is the constant y0 (its slope is zero).
  let historyIsConstant: Bool
  /// Per delay, a tracked one-element tensor of τ_j when gradients with respect to it are
  /// wanted (nil entries, or none, otherwise).
  var delayLeaves: [Tensor?] = []
  private(set) var steps: [ODEDenseStep] = []
  /// The last lookup: Runge–Kutta stages with equal nodes (RK4's two midpoints) read the same
  /// delayed time, which then costs one interpolation (and, on the tape, one recorded op).
  private var last: (s: Double, value: Tensor)? = nil

  init(
    t0: Double, tableau: ButcherTableau, shape: [Int], historyIsConstant: Bool,
    history: @escaping (Double) throws -> Tensor
  ) {
    self.t0 = t0
    self.historyIsConstant = historyIsConstant
    self.tableau = tableau
    // Only its `interpolate` is used, which reads no right-hand side.
    self.interpolator = ODEIntegrator(
      f: { _, y in y }, options: ODEOptions(), normComponents: 0, onEvaluation: {},
      onStep: { _ in })
    self.shape = shape
    self.history = history
  }

  func append(_ step: ODEDenseStep) { steps.append(step) }

  /// Drops steps that end before `time` (no later lookup reaches them).
  func discard(before time: Double) {
    let n = steps.prefix { $0.t + $0.h < time }.count
    if n > 0 { steps.removeFirst(n) }
  }

  /// y(t − τ_j) for the delay τ_j = `tau`; with a tracked `delayLeaves[j]`, recorded so that
  /// its cotangent g gives ∂/∂τ_j = −gᵀ·y'(t − τ_j) (the slope of the dense output or the
  /// history; the step grid is held fixed).
  func read(_ t: Double, delay j: Int, tau: Double) throws -> Tensor {
    let s = t - tau
    let v = try value(at: s)
    guard j < delayLeaves.count, let leaf = delayLeaves[j], leaf.isTracked,
      let slope = try slope(at: s)
    else { return v }
    let shape = leaf.shape
    return v.recorded(from: v, leaf) { g in [g, try (-(g * slope).sum()).reshaped(shape)] }
  }

  /// dy/ds at s (detached): a central difference of the step's interpolant (one-sided at its
  /// ends) or of the history; nil for the constant history.
  func slope(at s: Double) throws -> Tensor? {
    let slack = 1e-10 * max(1, Swift.abs(s))
    if s <= t0 + slack || steps.isEmpty {
      if historyIsConstant { return nil }
      let d = 1e-4 * max(1, Swift.abs(s))
      return try (history(s + d).detached - history(s - d).detached) * (1 / (2 * d))
    }
    let step = steps[stepIndex(containing: s)]
    let theta = min(1, max(0, (s - step.t) / step.h))
    let (a, b) = (max(0, theta - 1e-3), min(1, theta + 1e-3))
    func at(_ th: Double) throws -> Tensor {
      try interpolator.interpolate(
        tableau, theta: th, h: step.h, y0: step.y0.map(\.detached),
        y1: step.y1.map(\.detached), stages: step.stages.map { $0.map(\.detached) })[0]
    }
    return try (at(b) - at(a)) * (1 / ((b - a) * step.h))
  }

  /// The kept step with t < s ≤ t + h (the last one for s past them all): a binary search, as
  /// the steps are contiguous and increasing. Requires a step.
  private func stepIndex(containing s: Double) -> Int {
    var lo = 0
    var hi = steps.count - 1
    while lo < hi {
      let mid = (lo + hi) / 2
      if steps[mid].t + steps[mid].h < s { lo = mid + 1 } else { hi = mid }
    }
    return lo
  }

  /// The solution at s ≤ the end of the last accepted step.
  func value(at s: Double) throws -> Tensor {
    if let last, last.s == s { return last.value }
    let slack = 1e-10 * max(1, Swift.abs(s))
    let value: Tensor
    if s <= t0 + slack || steps.isEmpty {
      guard s <= t0 + slack else {
        throw ODEError.invalidOptions("delayed time \(s) lies after the computed past (t0 \(t0))")
      }
      value = try history(s)
      guard value.shape == shape else {
        throw ODEError.invalidOptions(
          "the history returned shape \(value.shape) at t = \(s); the state has shape \(shape)")
      }
    } else {
      let step = steps[stepIndex(containing: s)]
      guard s >= step.t - slack, s <= step.t + step.h + slack else {
        throw ODEError.invalidOptions(
          "delayed time \(s) lies outside the kept window [\(steps[0].t), \(step.t + step.h)]")
      }
      let theta = min(1, max(0, (s - step.t) / step.h))
      value = try interpolator.interpolate(
        tableau, theta: theta, h: step.h, y0: step.y0, y1: step.y1, stages: step.stages)[0]
    }
    last = (s, value)
    return value
  }
}

/// The method of steps: the interval is cut at the breakpoints t0 + kτ_min (so every delayed
/// time of a segment's steps lies in the already computed past) and at the discontinuities
/// t0 + kτ_j (k ≤ the method's order + 1) that propagate from t0; each segment is an ODE solve of
/// `ODEIntegrator`, its right-hand side reading delayed states from a `DelayWindow`.
struct DDEIntegrator {
  let field: DelayVectorField
  let delays: [Double]
  /// The caller's options with `steps` turned into `stepSize` over the whole interval.
  let options: ODEOptions
  let tableau: ButcherTableau
  let statistics: ODEStatistics

  /// The segment ends after t0, the last being tEnd.
  static func breakpoints(t0: Double, tEnd: Double, delays: [Double], order: Int) -> [Double] {
    let tauMin = delays.min()!
    let slack = 1e-9 * max(1, Swift.abs(tEnd))
    var points: [Double] = []
    var k = 1.0
    while t0 + k * tauMin < tEnd - slack {
      points.append(t0 + k * tauMin)
      k += 1
    }
    for tau in delays where tau != tauMin {
      for j in 1...(order + 1) where t0 + Double(j) * tau < tEnd - slack {
        points.append(t0 + Double(j) * tau)
      }
    }
    points.sort()
    var merged: [Double] = []
    for p in points where merged.last.map({ p - $0 > slack }) ?? (p - t0 > slack) {
      merged.append(p)
    }
    return merged + [tEnd]
  }

  func integrator(window: DelayWindow, backward: Bool, firstStep: Double? = nil)
    -> ODEIntegrator
  {
    let stats = statistics
    let field = field
    let delays = delays
    var o = options
    if let firstStep, o.solver.isAdaptive { o.firstStep = firstStep }
    return ODEIntegrator(
      f: { t, y in
        [
          try field(
            t, y[0], try delays.indices.map { try window.read(t, delay: $0, tau: delays[$0]) })
        ]
      },
      options: o, normComponents: backward ? 0 : 1,
      onEvaluation: {
        if backward { stats.backwardEvaluations += 1 } else { stats.forwardEvaluations += 1 }
      },
      onStep: { stats.countStep(accepted: $0, backward: backward) })
  }

  /// One segment solved forward from y at `start` to `ends.last`, with outputs at `ends`
  /// (increasing, after `start`); its accepted steps are appended to `window` and returned.
  /// An adaptive solve starts with the step the previous segment's controller proposed.
  func solveSegment(
    _ y: Tensor, from start: Double, to ends: [Double], window: DelayWindow,
    firstStep: inout Double?
  ) throws -> (outputs: [Tensor], steps: [ODEDenseStep]) {
    var steps: [ODEDenseStep] = []
    var proposal: Double? = nil
    var integ = integrator(window: window, backward: false, firstStep: firstStep)
    integ.denseRecorder = { steps.append($0) }
    integ.onFinalStepProposal = { proposal = $0 }
    let outputs = try integ.solve([y], from: start, to: ends).map { $0[0] }
    for step in steps { window.append(step) }
    if let proposal { firstStep = proposal }
    return (outputs, steps)
  }

  /// The same segment replayed through the steps `recorded` took (no step control), for the
  /// adjoint: its outputs at the recorded output indices, and each step's dense data.
  func replaySegment(
    _ y: Tensor, plan recorded: [DDEStepPlan], outputCount: Int, window: DelayWindow
  ) throws -> (outputs: [Tensor], steps: [ODEDenseStep]) {
    let integ = integrator(window: window, backward: true)
    var outputs = [Tensor?](repeating: nil, count: outputCount)
    var steps: [ODEDenseStep] = []
    var state = [y]
    for r in recorded {
      let step = try integ.rungeKuttaStep(tableau, t: r.t, h: r.h, y: state, firstStage: nil)
      integ.onStep(true)
      for (index, theta) in r.outputs {
        outputs[index] = try integ.interpolate(
          tableau, theta: theta, h: r.h, y0: state, y1: step.y1, stages: step.stages)[0]
      }
      steps.append(
        integ.denseStep(tableau, t: r.t, h: r.h, y0: state, step: step, outputs: r.outputs))
      state = step.y1
    }
    return (outputs.map { $0! }, steps)
  }
}
