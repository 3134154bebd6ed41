import DiffEqCore
import Kernels

/// Solves the delay differential equation dy/dt = f(t, y(t), y(t − τ₁), …, y(t − τ_m)) from
/// y(t0) = y0 with y(t) = history(t) for t < t0, returning y at every time in `times` (strictly
/// increasing; the first is t0).
///
/// The method of steps over any Runge–Kutta solver of `options` (fixed or adaptive; not NAG):
/// the interval is cut at t0 + kτ_min and at the discontinuities t0 + kτ_j (k ≤ order + 1)
/// that propagate from t0, so every step lies inside one segment, no step is longer than the
/// smallest delay, and every delayed state comes from the already computed past: the dense
/// output of accepted steps (`ODEIntegrator.interpolate`: Dormand–Prince's continuous extension
/// for dopri5, cubic Hermite otherwise) or the history. Only the window [t − τ_max, t] of the
/// past is kept while solving. A fixed step size (`stepSize`, or `steps` over [t0, tN]) larger
/// than the smallest delay is an error. With no delays this is `odeint` of f(t, y, []).
///
/// Gradients (with respect to y0 and the field's parameters):
/// - `.direct` backpropagates through every solver operation, delayed reads included: exact for
///   the discrete solution; memory grows with the number of steps.
/// - `.backsolve` or `.checkpointed`: the segment-checkpointed adjoint (`DDEAdjoint`): the same
///   gradients as `.direct` (up to rounding), with at most one segment recorded at a time and
///   the dense output of O(√K) of the K segments kept (the rest re-solved in blocks).
///   A `.function` history is a constant to this method.
/// The delays are constants here; `ddeint(…, delays: Tensor, …)` differentiates them.
public func ddeint(
  _ field: DelayVectorField, _ y0: Tensor, history: DDEHistory = .constant, delays: [Double],
  times: [Double], options: ODEOptions = ODEOptions(), gradient: GradientMethod = .direct
) throws -> ODESolution {
  try ddeint(
    field, y0, history: history, delays: delays, delayTensor: nil, times: times,
    options: options, gradient: gradient)
}

/// `ddeint` with the delays as a 1-D tensor (of y0's dtype), through which gradients can flow:
/// ∂L/∂τ_j = −Σ over the delayed reads of their cotangent · y'(t − τ_j), the slope of the dense
/// output (or of the history; zero for the constant history), with the step grid (whose
/// breakpoints move with τ) held fixed. For a learned delay; both gradient methods give it.
public func ddeint(
  _ field: DelayVectorField, _ y0: Tensor, history: DDEHistory = .constant, delays: Tensor,
  times: [Double], options: ODEOptions = ODEOptions(), gradient: GradientMethod = .direct
) throws -> ODESolution {
  guard delays.rank == 1, delays.count >= 1 else {
    throw ODEError.invalidOptions("delays must be a non-empty 1-D tensor, not \(delays.shape)")
  }
  guard delays.dtype == y0.dtype else {
    throw ODEError.invalidOptions("delays of \(delays.dtype) for a state of \(y0.dtype)")
  }
  return try ddeint(
    field, y0, history: history, delays: try delays.toDoubles(),
    delayTensor: delays.isTracked ? delays : nil, times: times, options: options,
    gradient: gradient)
}

func ddeint(
  _ field: DelayVectorField, _ y0: Tensor, history: DDEHistory, delays: [Double],
  delayTensor: Tensor?, times: [Double], options: ODEOptions, gradient: GradientMethod
) throws -> ODESolution {
  try options.validate()
  guard let t0 = times.first else {
    throw ODEError.invalidTimes("at least one time (t0) is needed")
  }
  for (a, b) in zip(times, times.dropFirst()) where !(b > a && b.isFinite) {
    throw ODEError.invalidTimes("times must be finite and strictly increasing (\(a) then \(b))")
  }
  for tau in delays where !(tau > 0 && tau.isFinite) {
    throw ODEError.invalidOptions("every delay must be positive and finite, got \(tau)")
  }
  if delays.isEmpty {
    if case .function = history {
      throw ODEError.invalidOptions("a history needs at least one delay to be read")
    }
    return try odeint(
      VectorField(parameters: field.parameters) { t, y in try field(t, y, []) }, y0,
      times: times, options: options, gradient: gradient)
  }
  guard let tableau = options.solver.tableau else {
    throw ODEError.invalidOptions(
      "ddeint needs a Runge–Kutta solver's dense output, not \(options.solver)")
  }
  let tauMin = delays.min()!
  var o = options
  if let n = o.steps, let tEnd = times.last, tEnd > t0 {
    o.stepSize = (tEnd - t0) / Double(n)
    o.steps = nil
  }
  if !o.solver.isAdaptive, let h = o.stepSize, h > tauMin * (1 + 1e-9) {
    throw ODEError.invalidOptions(
      "the step size \(h) exceeds the smallest delay \(tauMin): a step would read its own future")
  }
  let stats = ODEStatistics()
  let dde = DDEIntegrator(
    field: field, delays: delays, options: o, tableau: tableau, statistics: stats)
  let shape = y0.shape
  func historyFunction(_ y0: Tensor, detach: Bool) -> (Double) throws -> Tensor {
    switch history {
    case .constant: return { _ in y0 }
    case .function(let h): return detach ? { try h($0).detached } : h
    }
  }

  let isConstant = if case .constant = history { true } else { false }
  if gradient == .direct {
    let (states, _) = try dde.forward(
      y0, history: historyFunction(y0, detach: false), historyIsConstant: isConstant,
      delayLeaves: try delayTensor.map { d in
        try delays.indices.map { try d.slice(axis: 0, $0..<($0 + 1)) }
      } ?? [], times: times, keepSteps: false)
    let trajectory = try Tensor.concat(states.map { try $0.reshaped([1] + shape) }, axis: 0)
    return ODESolution(trajectory: trajectory, states: states, statistics: stats)
  }

  let params = field.parameters?.trainableParameters() ?? []
  let paramValues = params.map { $0.parameter.value }
  let y0d = y0.detached
  let (states, segments) = try withParameters(
    of: field.parameters, setTo: paramValues.map(\.detached)
  ) {
    try dde.forward(
      y0d, history: historyFunction(y0d, detach: true), historyIsConstant: isConstant,
      delayLeaves: [], times: times, keepSteps: true)
  }
  let stacked = try Tensor.concat(states.map { try $0.reshaped([1] + shape) }, axis: 0)
  let backward = DDEAdjoint(
    integrator: dde, segments: segments, t0: t0, y0: y0d,
    history: isConstant ? nil : historyFunction(y0d, detach: true),
    delays: delayTensor?.detached, parameterValues: paramValues.map(\.detached))
  let delayInputs = delayTensor.map { [$0] } ?? []
  let recorded = stacked.recorded(from: [y0] + delayInputs + paramValues) { g in
    let cotangents = try times.indices.map {
      try g.slice(axis: 0, $0..<($0 + 1)).reshaped(shape)
    }
    let (dy0, dDelays, dtheta) = try backward.gradients(cotangents: cotangents)
    return [dy0] + (dDelays.map { [$0] } ?? []) + dtheta
  }
  let sliced = try times.indices.map {
    try recorded.slice(axis: 0, $0..<($0 + 1)).reshaped(shape)
  }
  return ODESolution(trajectory: recorded, states: sliced, statistics: stats)
}

/// One segment of the method of steps, as the adjoint replays it.
struct DDESegment {
  var start: Double
  var end: Double
  /// The state at `start`: kept at the adjoint's block starts; elsewhere (nil) the backward
  /// pass takes it from the previous segment's re-solved end.
  var y: Tensor?
  /// Its accepted steps (times, sizes, outputs), which a replay retraces.
  var plan: [DDEStepPlan]
  /// Their dense data (detached; the later segments' delayed reads), kept only where a block
  /// of the adjoint restarts from it (`DDEAdjoint.keepsDenseData`); nil elsewhere.
  var steps: [ODEDenseStep]?
  /// For each output of the segment's solve (the last is its end): the index in `times`, or nil.
  var outputIndices: [Int?]
}

/// An accepted step as a replay retraces it.
struct DDEStepPlan {
  var t: Double
  var h: Double
  var outputs: [(index: Int, theta: Double)]
}

extension DDEIntegrator {
  /// y at every time in `times`, and (with `keepSteps`) every segment with its steps; without,
  /// only the window [t − τ_max, t] of steps is kept.
  func forward(
    _ y0: Tensor, history: @escaping (Double) throws -> Tensor, historyIsConstant: Bool,
    delayLeaves: [Tensor?], times: [Double], keepSteps: Bool
  ) throws -> (states: [Tensor], segments: [DDESegment]) {
    let t0 = times[0]
    var states = [y0]
    guard let tEnd = times.last, tEnd > t0 else { return (states, []) }
    let window = DelayWindow(
      t0: t0, tableau: tableau, shape: y0.shape, historyIsConstant: historyIsConstant,
      history: history)
    window.delayLeaves = delayLeaves
    let tauMax = delays.max()!
    var segments: [DDESegment] = []
    var y = y0
    var start = t0
    var next = 1
    var firstStep: Double? = nil
    let boundaries = Self.breakpoints(
      t0: t0, tEnd: tEnd, delays: delays, order: tableau.order)
    let kept = DDEAdjoint.keepsDenseData(
      starts: [t0] + boundaries.dropLast(), ends: boundaries, tauMax: tauMax)
    for (k, end) in boundaries.enumerated() {
      let slack = 1e-9 * max(1, Swift.abs(end))
      var ends: [Double] = []
      var indices: [Int?] = []
      while next < times.count && times[next] < end - slack {
        ends.append(times[next])
        indices.append(next)
        next += 1
      }
      ends.append(end)
      if next < times.count && Swift.abs(times[next] - end) <= slack {
        indices.append(next)
        next += 1
      } else {
        indices.append(nil)
      }
      let solved = try solveSegment(y, from: start, to: ends, window: window, firstStep: &firstStep)
      for (i, index) in indices.enumerated() where index != nil { states.append(solved.outputs[i]) }
      if keepSteps {
        segments.append(
          DDESegment(
            start: start, end: end,
            y: k % DDEAdjoint.blockSize(segments: boundaries.count) == 0 ? y : nil,
            plan: solved.steps.map { DDEStepPlan(t: $0.t, h: $0.h, outputs: $0.outputs) },
            steps: kept[k] ? solved.steps : nil, outputIndices: indices))
      }
      y = solved.outputs[solved.outputs.count - 1]
      start = end
      window.discard(before: end - tauMax - slack)
    }
    return (states, segments)
  }
}
