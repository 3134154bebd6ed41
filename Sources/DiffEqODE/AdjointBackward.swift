import DiffEqCore

/// The backward passes of the adjoint gradient methods, for one forward solve.
struct AdjointBackward {
  let field: VectorField
  let times: [Double]
  /// The forward states at `times` (detached).
  let states: [Tensor]
  /// The parameter values the forward solve used, in `trainableParameters()` order.
  let parameterValues: [Tensor]
  let options: ODEOptions
  let adjoint: AdjointOptions
  let statistics: ODEStatistics
  /// The forward solve's step proposal at its end, where the backward solve starts (nil for a
  /// fixed-step forward solve).
  var forwardFinalStep: Double? = nil

  /// Runs `body` with the parameters set to the forward solve's values.
  func withForwardParameters<R>(_ body: () throws -> R) rethrows -> R {
    try withParameters(of: field.parameters, setTo: parameterValues.map(\.detached), body)
  }

  /// f(t, y) and the vector-Jacobian products aᵀ∂f/∂y and aᵀ∂f/∂θ (θ in parameter order).
  func vectorJacobian(_ t: Double, _ y: Tensor, _ a: Tensor) throws -> (Tensor, Tensor, [Tensor]) {
    statistics.backwardEvaluations += 1
    if let custom = field.vectorJacobian {
      let (fy, gy, gp) = try custom(t, y, a)
      guard gp.count == parameterValues.count else {
        throw TensorError.invalidArgument(
          op: "odeint adjoint",
          reason: "the vector field's VJP returned \(gp.count) parameter gradients for "
            + "\(parameterValues.count) parameters")
      }
      for (g, p) in zip(gp, parameterValues) where g.shape != p.shape {
        throw TensorError.shapeMismatch(
          op: "odeint adjoint parameter VJP", lhs: p.shape, rhs: g.shape)
      }
      return (fy, gy, gp)
    }
    let (fy, gy, gp) = try vjp(field.parameters, at: [y], cotangents: [a]) { ys in
      [try field(t, ys[0])]
    }
    return (fy[0], gy[0], gp)
  }

  /// ∂L/∂tᵢ for every output time: cᵢ·f(tᵢ, yᵢ) for i ≥ 1 and −(a₀ − c₀)·f(t₀, y₀), where cᵢ
  /// are the cotangents of the outputs and a₀ = ∂L/∂y0 (see `odeint(_:_:times:)` with a tensor).
  /// One evaluation of f per output time, counted as backward evaluations.
  func timeGradients(cotangents: [Tensor], initialAdjoint: Tensor) throws -> [Double] {
    try withForwardParameters {
      try times.indices.map { i in
        statistics.backwardEvaluations += 1
        let f = try field(times[i], states[i])
        let weight = i == 0 ? try cotangents[0] - initialAdjoint : cotangents[i]
        return try (weight.detached * f.detached).sum().item()
      }
    }
  }

  /// The backsolve adjoint. In reversed time s = −t the augmented state [y, a, a_θ] obeys
  ///   dy/ds = −f(t, y),   da/ds = aᵀ ∂f/∂y,   da_θ/ds = aᵀ ∂f/∂θ,
  /// from y(t_N), a = ∂L/∂y(t_N), a_θ = 0. At each earlier output time y is reset to the saved
  /// forward state and a jumps by ∂L/∂y(t_i); at t0, a = ∂L/∂y0 and a_θ = ∂L/∂θ.
  func backsolve(cotangents: [Tensor]) throws -> (Tensor, [Tensor]) {
    try withForwardParameters {
      var backwardOptions = options
      if let s = adjoint.solver { backwardOptions.solver = s }
      if let r = adjoint.rtol { backwardOptions.rtol = r }
      if let a = adjoint.atol { backwardOptions.atol = a }
      let stats = statistics
      var a = cotangents[times.count - 1]
      // a_θ is integrated as one flat vector, the parameters' gradients end to end, so that each
      // stage combination and error norm is one term for all parameters rather than one each.
      let counts = parameterValues.map(\.count)
      let total = counts.reduce(0, +)
      let hasParameters = !parameterValues.isEmpty
      var aTheta =
        try parameterValues.first.map {
          [try Tensor.zeros([total], dtype: $0.dtype, on: $0.backend)]
        } ?? []
      // Each interval starts with the step the previous one ended on, rather than probing for
      // one (an evaluation and two reads per interval; the dynamics change only by the
      // cotangent's jump). The first starts with the forward solve's last proposal, from the
      // same point, when both directions solve to the same tolerances with the same method.
      let sameControl =
        backwardOptions.solver == options.solver && backwardOptions.rtol == options.rtol
        && backwardOptions.atol == options.atol
      var carriedStep: Double? = sameControl ? forwardFinalStep : nil
      for i in stride(from: times.count - 1, to: 0, by: -1) {
        var intervalOptions = backwardOptions
        if backwardOptions.firstStep == nil { intervalOptions.firstStep = carriedStep }
        var integrator = ODEIntegrator(
          f: { s, z in
            let (fy, ay, ap) = try vectorJacobian(-s, z[0], z[1])
            guard hasParameters else { return [try -fy, ay] }
            return [
              try -fy, ay,
              try Tensor.concat(ap.map { try $0.detached.reshaped([$0.count]) }, axis: 0),
            ]
          },
          options: intervalOptions, normComponents: adjoint.seminorm ? 2 : Int.max,
          onEvaluation: {},
          onStep: { stats.countStep(accepted: $0, backward: true) })
        integrator.onFinalStepProposal = { carriedStep = $0 }
        integrator.readComponents = 2  // the VJP reads y and a, never a_θ
        let z = try integrator.solve(
          [states[i], a] + aTheta, from: -times[i], to: [-times[i - 1]])[0]
        a = try z[1] + cotangents[i - 1]
        aTheta = Array(z[2...])
      }
      guard let flat = aTheta.first else { return (a, []) }
      var start = 0
      return (
        a,
        try parameterValues.indices.map { k in
          defer { start += counts[k] }
          return try flat.slice(axis: 0, start..<(start + counts[k]))
            .reshaped(parameterValues[k].shape)
        }
      )
    }
  }

  /// The checkpointed adjoint: each recorded step is recomputed from its saved state with
  /// recording on, and backpropagated with the running adjoint (and the cotangents of any output
  /// it produced) as its seed.
  func checkpointed(_ records: [ODEStepRecord], cotangents: [Tensor]) throws -> (Tensor, [Tensor]) {
    try withForwardParameters {
      let stats = statistics
      let integrator = ODEIntegrator(
        f: { t, y in
          stats.backwardEvaluations += 1
          return [try field(t, y[0])]
        }, options: options, normComponents: 1, onEvaluation: {}, onStep: { _ in })
      // The adjoint of the state after the current step; outputs seed their own cotangents.
      var a = try states[0].zerosLike()
      var aPrevious: Tensor? = nil  // NAG: the adjoint of y_{n−1} from the step after
      var aTheta = try parameterValues.map { try $0.detached.zerosLike() }
      for record in records.reversed() {
        // Record indices count the solve's target times, which start after t0.
        let seeds = [a] + record.outputs.map { cotangents[$0.index + 1] }
        let outputThetas = record.outputs
        let inputs = [record.y[0]] + (record.previous.map { [$0[0]] } ?? [])
        let (_, gx, gp) = try vjp(field.parameters, at: inputs, cotangents: seeds) { xs in
          let y = [xs[0]]
          let previous = xs.count > 1 ? [xs[1]] : nil
          switch options.solver {
          case .nag(let mu):
            let y1 = try NAGStepper(momentum: mu).step(
              t: record.t, h: record.h, y: y, previous: previous, evaluate: integrator.evaluate)
            return y1 + outputThetas.map { _ in y1[0] }
          default:
            let tableau = options.solver.tableau!
            let step = try integrator.rungeKuttaStep(
              tableau, t: record.t, h: record.h, y: y, firstStage: nil)
            return try [step.y1[0]]
              + outputThetas.map {
                try integrator.interpolate(
                  tableau, theta: $0.theta, h: record.h, y0: y, y1: step.y1, stages: step.stages)[0]
              }
          }
        }
        // y_n also enters the next step as NAG's y_{n−1}.
        a = try aPrevious.map { try gx[0] + $0 } ?? gx[0]
        aPrevious = gx.count > 1 ? gx[1] : nil
        aTheta = try zip(aTheta, gp).map { try $0 + $1 }
      }
      if let aPrevious { a = try a + aPrevious }
      return (try a + cotangents[0], aTheta)
    }
  }
}
