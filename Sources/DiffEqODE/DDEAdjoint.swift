import DiffEqCore
import Kernels

/// The gradients of `ddeint` by segment checkpoints: the discrete adjoint of the method of steps,
/// whose cotangents equal `.direct` backpropagation's up to rounding.
///
/// The forward solve records nothing; it keeps, per segment of the method of steps (length
/// ≤ τ_min), its start state (the checkpoint) and the dense data of its accepted steps, detached
/// (a delay equation restarts from a window of its past, not from a state). The backward pass
/// takes the segments from the last to the first: each is replayed from its checkpoint through
/// its recorded steps on the tape, its delayed reads taken from the earlier segments' dense data
/// as leaves, and backpropagated once, seeded with the cotangent of its end state (λ at the
/// boundary, from the segment after it), of the outputs inside it, and of its own dense data
/// (λ(t + τ)ᵀ ∂f/∂y_τ: what the later segments' delayed reads sent back). This is the
/// discretisation of λ'(t) = −λ(t)ᵀ ∂f/∂y(t) − 𝟙[t + τ ≤ T] λ(t + τ)ᵀ ∂f/∂y_τ|_(t+τ),
/// dL/dθ = ∫ λᵀ ∂f/∂θ dt that differentiates exactly the computed solution.
///
/// Memory: O(N·(s_d + 1)·|y|) detached tensors for N steps (s_d: the stages the dense output
/// reads, 2 for Hermite, 6 for dopri5), released segment by segment during the backward pass,
/// plus one segment's recording and the cotangents of the ⌈τ_max/τ_min⌉ segments before it
/// (with a single delay: at most two segments of intermediates at a time). `.direct` keeps
/// every step's intermediates, which for a neural f are many times |y| per stage.
final class DDEAdjoint {
  let integrator: DDEIntegrator
  var segments: [DDESegment]
  let t0: Double
  let y0: Tensor
  /// A function history (detached); nil for the constant history y0, which is differentiated.
  let history: ((Double) throws -> Tensor)?
  let parameterValues: [Tensor]

  init(
    integrator: DDEIntegrator, segments: [DDESegment], t0: Double, y0: Tensor,
    history: ((Double) throws -> Tensor)?, parameterValues: [Tensor]
  ) {
    self.integrator = integrator
    self.segments = segments
    self.t0 = t0
    self.y0 = y0
    self.history = history
    self.parameterValues = parameterValues
  }

  /// Cotangents of y0 and of the parameters (in `trainableParameters()` order) given the
  /// cotangents of the states at every output time.
  func gradients(cotangents: [Tensor]) throws -> (Tensor, [Tensor]) {
    let model = integrator.field.parameters
    let tauMax = integrator.delays.max()!
    var dTheta: [Tensor]? = nil
    var dHistory: Tensor? = nil
    var lambda: Tensor? = nil
    /// Cotangents of dense data read by later segments: [segment][step] → [y0, y1, stages…].
    var pending = segments.map { $0.steps.map { _ in [Tensor?](repeating: nil, count: 0) } }
    let perStep = 2 + (segments.first?.steps.first?.stages.count ?? 0)

    for k in segments.indices.reversed() {
      let segment = segments[k]
      let slack = 1e-9 * max(1, Swift.abs(segment.start))
      // The earlier steps this segment's delayed reads can reach.
      var windowSteps: [(segment: Int, step: Int)] = []
      for j in 0..<k {
        for (n, step) in segments[j].steps.enumerated()
        where step.t + step.h > segment.start - tauMax - slack {
          windowSteps.append((j, n))
        }
      }
      // Leaves: the checkpoint, the constant history, each window step's tensors.
      var xs = [segment.y]
      if history == nil { xs.append(y0) }
      let windowOffset = xs.count
      for (j, n) in windowSteps {
        let step = segments[j].steps[n]
        xs += step.y0 + step.y1 + step.stages.map { $0[0] }
      }

      // Seeds: the end state, the outputs inside, this segment's dense data read later.
      var seeds: [Tensor] = []
      let endIndex = segment.outputIndices.count - 1
      var endSeed = lambda
      if let i = segment.outputIndices[endIndex] {
        endSeed = try endSeed.map { try $0 + cotangents[i] } ?? cotangents[i]
      }
      seeds.append(try endSeed ?? segment.y.zerosLike())
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
          let window = DelayWindow(
            t0: t0, tableau: integrator.tableau, shape: segment.y.shape,
            history: constant.map { c in { _ in c } } ?? history!)
          for (w, (j, n)) in windowSteps.enumerated() {
            var step = segments[j].steps[n]
            let base = windowOffset + w * perStep
            step.y0 = [leaves[base]]
            step.y1 = [leaves[base + 1]]
            step.stages = (0..<(perStep - 2)).map { [leaves[base + 2 + $0]] }
            window.append(step)
          }
          let replayed = try integrator.replaySegment(
            leaves[0], steps: segment.steps, outputCount: segment.outputIndices.count,
            window: window)
          var outputs = [replayed.outputs[endIndex]]
          for (o, _) in inside { outputs.append(replayed.outputs[o]) }
          for (n, p) in denseSeeds {
            let step = replayed.steps[n]
            outputs.append(
              p == 0 ? step.y0[0] : p == 1 ? step.y1[0] : step.stages[p - 2][0])
          }
          return outputs
        }
      }
      lambda = gx[0]
      if history == nil {
        dHistory = try dHistory.map { try $0 + gx[1] } ?? gx[1]
      }
      for (w, (j, n)) in windowSteps.enumerated() {
        let base = windowOffset + w * perStep
        var parts = pending[j][n]
        if parts.isEmpty { parts = [Tensor?](repeating: nil, count: perStep) }
        for p in 0..<perStep {
          let g = gx[base + p]
          parts[p] = try parts[p].map { try $0 + g } ?? g
        }
        pending[j][n] = parts
      }
      dTheta = try dTheta.map { try zip($0, gp).map { try $0 + $1 } } ?? gp
      // This segment is done: its checkpoint, its steps and their cotangents go.
      pending[k] = []
      segments[k].steps = []
    }
    var dy0 = try (lambda ?? y0.zerosLike()) + cotangents[0]
    if let dHistory { dy0 = try dy0 + dHistory }
    return (dy0, try dTheta ?? parameterValues.map { try $0.zerosLike() })
  }
}
