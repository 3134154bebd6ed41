import DiffEqCore
import Kernels

/// The gradients of `ddeint` by segment checkpoints: the discrete adjoint of the method of steps,
/// whose cotangents equal `.direct` backpropagation's up to rounding.
///
/// A delay equation restarts from a window of its past, not from a state. The forward solve
/// records nothing; it keeps every segment's step sizes, and for each block of B = ⌈√K⌉
/// consecutive segments (K segments in all) the state at its start and the dense data of the
/// accepted steps (detached) of the segments that end within τ_max before that start, and of
/// the last block. The backward pass takes the
/// blocks from the last: it re-solves the block forward from the window before it (recording
/// nothing, through the recorded steps) to get its segments' dense data, then takes its segments
/// from the last: each is replayed from its start state on the tape, its delayed reads taken from
/// the earlier segments' dense data as leaves, and backpropagated once, seeded with the cotangent
/// of its end state (λ at the boundary, from the segment after it), of the outputs inside it,
/// and of its own dense data (λ(t + τ)ᵀ ∂f/∂y_τ: what the later segments' delayed reads sent
/// back). This is the discretisation of
///   λ'(t) = −λ(t)ᵀ ∂f/∂y(t) − 𝟙[t + τ ≤ T] λ(t + τ)ᵀ ∂f/∂y_τ|_(t+τ),   dL/dθ = ∫ λᵀ ∂f/∂θ dt
/// that differentiates exactly the computed solution.
///
/// Memory: O(K/B + B) = O(√K) segments' dense data and start states ((s_d + 1)·|y|
/// per step, s_d the stages the dense output reads: 2 for Hermite, 6 for dopri5), one segment's
/// recording and the cotangents of the ⌈τ_max/τ_min⌉ segments before it (with a single delay, at
/// most two segments of intermediates at a time). `.direct` keeps every step's intermediates.
/// Work: a forward solve of all but the last block more than `.direct` (the blocks' re-solves),
/// plus one replay per step.
final class DDEAdjoint {
  let integrator: DDEIntegrator
  var segments: [DDESegment]
  let t0: Double
  let y0: Tensor
  /// A function history (detached); nil for the constant history y0, which is differentiated.
  let history: ((Double) throws -> Tensor)?
  /// The delays' values (detached) when their gradient is wanted.
  let delays: Tensor?
  let parameterValues: [Tensor]

  init(
    integrator: DDEIntegrator, segments: [DDESegment], t0: Double, y0: Tensor,
    history: ((Double) throws -> Tensor)?, delays: Tensor?, parameterValues: [Tensor]
  ) {
    self.integrator = integrator
    self.segments = segments
    self.t0 = t0
    self.y0 = y0
    self.history = history
    self.delays = delays
    self.parameterValues = parameterValues
  }

  /// Segments per block of the backward pass: ⌈√K⌉.
  static func blockSize(segments k: Int) -> Int {
    max(1, Int(Double(k).squareRoot().rounded(.up)))
  }

  /// Which segments' dense data the forward solve keeps: those that end within τ_max before a
  /// block's start (the window a block's re-solve starts from), and the last block's (the
  /// backward pass would re-solve it first, at once).
  static func keepsDenseData(starts: [Double], ends: [Double], tauMax: Double) -> [Bool] {
    let b = blockSize(segments: ends.count)
    var keep = [Bool](repeating: false, count: ends.count)
    for j in (max(0, ends.count - 1) / b * b)..<ends.count { keep[j] = true }
    for blockStart in stride(from: b, to: ends.count, by: b) {
      let from = starts[blockStart] - tauMax - 1e-9 * max(1, Swift.abs(starts[blockStart]))
      var j = blockStart - 1
      while j >= 0 && ends[j] > from {
        keep[j] = true
        j -= 1
      }
    }
    return keep
  }

  /// The earlier steps segment `k`'s delayed reads can reach, as (segment, step).
  func reachable(from k: Int) -> [(segment: Int, step: Int)] {
    let start = segments[k].start
    let from = start - integrator.delays.max()! - 1e-9 * max(1, Swift.abs(start))
    // Segments are contiguous and increasing: walk back from k until one ends before `from`.
    var first = k
    while first > 0 && segments[first - 1].end > from { first -= 1 }
    var out: [(Int, Int)] = []
    for j in first..<k {
      for (n, step) in segments[j].steps!.enumerated() where step.t + step.h > from {
        out.append((j, n))
      }
    }
    return out
  }

  func window(history: @escaping (Double) throws -> Tensor) -> DelayWindow {
    DelayWindow(
      t0: t0, tableau: integrator.tableau, shape: y0.shape, historyIsConstant: self.history == nil,
      history: history)
  }

  /// Re-solves segment `k` forward from its start state through its recorded steps, recording
  /// nothing, and keeps its dense data.
  func regenerate(_ k: Int) throws {
    let w = window(history: history ?? { [y0] _ in y0 })
    for (j, n) in reachable(from: k) { w.append(segments[j].steps![n]) }
    let model = integrator.field.parameters
    let replayed = try withParameters(of: model, setTo: parameterValues) {
      try integrator.replaySegment(
        segments[k].y!, plan: segments[k].plan, outputCount: segments[k].outputIndices.count,
        window: w)
    }
    segments[k].steps = replayed.steps
  }

  /// Cotangents of y0, of the delays (when wanted) and of the parameters (in
  /// `trainableParameters()` order) given the cotangents of the states at every output time.
  func gradients(cotangents: [Tensor]) throws -> (Tensor, Tensor?, [Tensor]) {
    let model = integrator.field.parameters
    var dTheta: [Tensor]? = nil
    var dHistory: Tensor? = nil
    var dDelays: Tensor? = nil
    var lambda: Tensor? = nil
    /// Cotangents of dense data read by later segments: [segment][step] → [y0, y1, stages…].
    var pending = segments.map { $0.plan.map { _ in [Tensor?]() } }
    let perStep = 2 + (integrator.tableau.name == "dopri5" ? 7 : 2)
    let b = Self.blockSize(segments: segments.count)

    for blockStart in stride(from: 0, to: segments.count, by: b).reversed() {
      let block = blockStart..<min(blockStart + b, segments.count)
      for k in block {
        if segments[k].y == nil { segments[k].y = segments[k - 1].steps!.last!.y1[0] }
        if segments[k].steps == nil { try regenerate(k) }
      }
      for k in block.reversed() {
        let segment = segments[k]
        let windowSteps = reachable(from: k)
        // Leaves: the checkpoint, the constant history, each window step's tensors.
        var xs = [segment.y!]
        if history == nil { xs.append(y0) }
        let delayIndex = xs.count
        if let delays { xs.append(delays) }
        let windowOffset = xs.count
        for (j, n) in windowSteps {
          let step = segments[j].steps![n]
          xs += step.y0 + step.y1 + step.stages.map { $0[0] }
        }

        // Seeds: the end state, the outputs inside, this segment's dense data read later.
        var seeds: [Tensor] = []
        let endIndex = segment.outputIndices.count - 1
        var endSeed = lambda
        if let i = segment.outputIndices[endIndex] {
          endSeed = try endSeed.map { try $0 + cotangents[i] } ?? cotangents[i]
        }
        seeds.append(try endSeed ?? segment.y!.zerosLike())
        let inside = segment.outputIndices.dropLast().enumerated().compactMap { o, i in
          i.map { (output: o, time: $0) }
        }
        for (_, i) in inside { seeds.append(cotangents[i]) }
        var denseSeeds: [(step: Int, part: Int)] = []
        for (n, parts) in pending[k].enumerated() {
          for (p, g) in parts.enumerated() {
            if let g {
              denseSeeds.append((n, p))
              seeds.append(g)
            }
          }
        }

        let (_, gx, gp) = try withParameters(of: model, setTo: parameterValues) {
          try vjp(model, at: xs, cotangents: seeds) { leaves in
            let constant = history == nil ? leaves[1] : nil
            let w = window(history: constant.map { c in { _ in c } } ?? history!)
            if delays != nil {
              let d = leaves[delayIndex]
              w.delayLeaves = try (0..<d.count).map { try d.slice(axis: 0, $0..<($0 + 1)) }
            }
            for (index, (j, n)) in windowSteps.enumerated() {
              var step = segments[j].steps![n]
              let base = windowOffset + index * perStep
              step.y0 = [leaves[base]]
              step.y1 = [leaves[base + 1]]
              step.stages = (0..<(perStep - 2)).map { [leaves[base + 2 + $0]] }
              w.append(step)
            }
            let replayed = try integrator.replaySegment(
              leaves[0], plan: segment.plan, outputCount: segment.outputIndices.count, window: w)
            var outputs = [replayed.outputs[endIndex]]
            for (o, _) in inside { outputs.append(replayed.outputs[o]) }
            for (n, p) in denseSeeds {
              let step = replayed.steps[n]
              outputs.append(p == 0 ? step.y0[0] : p == 1 ? step.y1[0] : step.stages[p - 2][0])
            }
            return outputs
          }
        }
        lambda = gx[0]
        if history == nil {
          dHistory = try dHistory.map { try $0 + gx[1] } ?? gx[1]
        }
        if delays != nil {
          dDelays = try dDelays.map { try $0 + gx[delayIndex] } ?? gx[delayIndex]
        }
        for (index, (j, n)) in windowSteps.enumerated() {
          let base = windowOffset + index * perStep
          var parts = pending[j][n]
          if parts.isEmpty { parts = [Tensor?](repeating: nil, count: perStep) }
          for p in 0..<perStep {
            let g = gx[base + p]
            parts[p] = try parts[p].map { try $0 + g } ?? g
          }
          pending[j][n] = parts
        }
        dTheta = try dTheta.map { try zip($0, gp).map { try $0 + $1 } } ?? gp
        // This segment is done: no later step reads its dense data or their cotangents.
        pending[k] = []
        segments[k].steps = nil
        segments[k].y = nil
      }
    }
    var dy0 = try (lambda ?? y0.zerosLike()) + cotangents[0]
    if let dHistory { dy0 = try dy0 + dHistory }
    return (
      dy0, try dDelays ?? delays?.zerosLike(),
      try dTheta ?? parameterValues.map { try $0.zerosLike() }
    )
  }
}
