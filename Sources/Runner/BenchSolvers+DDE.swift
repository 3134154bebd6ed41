import ArgumentParser
import DiffEqNet
import Foundation

extension BenchSolvers {
  /// The delay workloads: the DDNN classifiers' conv DDE block, one training iteration of an MLP
  /// DDE on Mackey–Glass (the problem `scripts/compare/dde_torchdde.py` times in torchdde), and
  /// the peak pool bytes of the segment adjoint and of direct backpropagation at 4, 16 and 64
  /// τ-segments (`config=dde_adjoint_memory`).
  func dde(on backend: any Backend) throws {
    try ddeConvBlock(on: backend)
    try ddeMackeyGlass(on: backend)
    try ddeMemory(on: backend)
  }

  /// Median forward and backward (gradient of mean(h(1)·r)) times of the ddnn-a and ddnn-b
  /// blocks at the MNIST classifier's shape (batch 64, 64 channels, 6×6), τ = 0.5, RK4 with 4
  /// steps over [0, 1].
  func ddeConvBlock(on backend: any Backend) throws {
    let reps = max(1, min(options.repetitions, 5))
    var rng = RandomState(seed: 3)
    let x = try Tensor.normal([64, 64, 6, 6], rng: &rng, on: backend)
    let r = try Tensor.normal([64, 64, 6, 6], rng: &rng, on: backend)
    for architecture in [ModelArchitecture.ddnnA, .ddnnB] {
      for gradient in [GradientMethod.backsolve, .direct] {
        var c = ModelZoo.Configuration()
        c.ode = .fixed(.rk4, steps: 4)
        c.gradient = gradient
        c.delay = 0.5
        let classifier = try ModelZoo.make(architecture, c, on: backend)
        guard let block = classifier.features.first as? DDEBlock else {
          throw ValidationError("\(architecture) has no DDE block")
        }
        var forwardTimes: [Double] = []
        var backwardTimes: [Double] = []
        var peak = 0
        for rep in 0...reps {
          backend.pool.resetPeak()
          let base = backend.pool.currentBytes
          let start = DispatchTime.now().uptimeNanoseconds
          var solved = start
          let (loss, _) = try valueAndGrad(block) {
            let loss = try (block(x) * r).mean()
            try backend.synchronize()
            solved = DispatchTime.now().uptimeNanoseconds
            return loss
          }
          _ = try loss.item()
          let end = DispatchTime.now().uptimeNanoseconds
          peak = backend.pool.peakBytes - base
          if rep > 0 {  // the first is a warm-up
            forwardTimes.append(Double(solved - start) / 1e9)
            backwardTimes.append(Double(end - solved) / 1e9)
          }
        }
        let stats = block.lastStatistics
        report([
          ("workload", "dde"), ("config", "\(architecture)_rk4_\(ddeGradientName(gradient))"),
          ("batch", 64), ("shape", "64x6x6"), ("delay", 0.5), ("steps", 4),
          ("device", backend.name), ("forward_s", median(forwardTimes)),
          ("backward_s", median(backwardTimes)), ("nfe_forward", stats.forwardEvaluations),
          ("nfe_backward", stats.backwardEvaluations), ("peak_bytes", peak),
        ])
      }
    }
  }

  /// One training iteration (forward, gradient, Adam step) of dx/dt = MLP([x(t), x(t − 17)]),
  /// 2→64→64→1 tanh, on batches of 32 Mackey–Glass windows: history from the true series
  /// (linearly interpolated), 34 time units ahead at unit spacing, RK4 with step 1, MSE. Also
  /// the relative difference of the adjoint's gradients from direct backpropagation's.
  func ddeMackeyGlass(on backend: any Backend) throws {
    let problem = try MackeyGlassProblem(on: backend)
    var adjointGradients: [Double] = []
    for gradient in [GradientMethod.backsolve, .direct] {
      var rng = RandomState(seed: 11)
      let mlp = try MLP([2, 64, 64, 1], activation: .tanh, rng: &rng, on: backend)
      let optimizer = Adam(learningRate: 1e-3)
      var stats = ODEStatistics()
      var peak = 0
      var loss = 0.0
      var first: [Double] = []
      var times: [Double] = []
      for iteration in 0...iterations {
        backend.pool.resetPeak()
        let base = backend.pool.currentBytes
        let start = DispatchTime.now().uptimeNanoseconds
        let (value, grads) = try valueAndGrad(mlp) {
          let (l, s) = try problem.loss(mlp, gradient: gradient)
          stats = s
          return l
        }
        try optimizer.update(mlp, gradients: grads)
        loss = try value.item()
        let end = DispatchTime.now().uptimeNanoseconds
        peak = backend.pool.peakBytes - base
        if iteration == 0 {
          for (name, _) in mlp.trainableParameters() { first += try grads[name]!.toDoubles() }
        } else {
          times.append(Double(end - start) / 1e9)
        }
      }
      if gradient == .backsolve { adjointGradients = first }
      var fields: [(String, Any)] = [
        ("workload", "dde"), ("config", "mackey_glass_mlp_\(ddeGradientName(gradient))"),
        ("batch", 32), ("delay", 17.0), ("horizon", 34), ("solver", "rk4"), ("step", 1.0),
        ("device", backend.name), ("iterations", iterations),
        ("median_iteration_s", median(times)), ("nfe_forward", stats.forwardEvaluations),
        ("nfe_backward", stats.backwardEvaluations), ("peak_bytes", peak),
        ("final_loss", loss),
      ]
      if gradient == .direct {
        fields.append(("adjoint_vs_direct_relative", relativeDifference(adjointGradients, first)))
      }
      report(fields)
    }
  }

  /// Peak pool bytes of one loss + gradient over 4, 16 and 64 τ-segments (T = segments·τ), for
  /// the segment adjoint and direct backpropagation: the conv field (ddnn-b's f, batch 8, 64
  /// channels, 6×6, τ = 0.5, two RK4 steps per segment) and the Mackey–Glass MLP (τ = 17, RK4
  /// step 1).
  func ddeMemory(on backend: any Backend) throws {
    var rng = RandomState(seed: 5)
    let conv = try DelaySplitFunction(channels: 64, rng: &rng, on: backend)
    let h0 = try Tensor.normal([8, 64, 6, 6], rng: &rng, on: backend)
    let mlp = try MLP([2, 64, 64, 1], activation: .tanh, rng: &rng, on: backend)
    let x0 = try Tensor.normal([32, 1], std: 0.1, rng: &rng, on: backend)
    let mlpField = DelayVectorField(parameters: mlp) { _, x, delayed in
      try mlp(Tensor.concat([x, delayed[0]], axis: 1))
    }
    for (name, model, field, y0, tau, step) in [
      ("conv", conv as Module, conv.field, h0, 0.5, 0.25),
      ("mlp", mlp as Module, mlpField, x0, 17.0, 1.0),
    ] {
      for segments in [4, 16, 64] {
        for gradient in [GradientMethod.backsolve, .direct] {
          var options = ODEOptions(solver: .rk4)
          options.stepSize = step
          backend.pool.resetPeak()
          let base = backend.pool.currentBytes
          let start = DispatchTime.now().uptimeNanoseconds
          var stats = ODEStatistics()
          let (loss, _) = try valueAndGrad(model) {
            let sol = try ddeint(
              field, y0, delays: [tau], times: [0, tau * Double(segments)], options: options,
              gradient: gradient)
            stats = sol.statistics
            return try sol.states[1].square().mean()
          }
          _ = try loss.item()
          let end = DispatchTime.now().uptimeNanoseconds
          report([
            ("workload", "dde"), ("config", "dde_adjoint_memory"), ("field", name),
            ("method", ddeGradientName(gradient)), ("segments", segments),
            ("steps", stats.acceptedSteps), ("device", backend.name),
            ("seconds", Double(end - start) / 1e9), ("nfe_forward", stats.forwardEvaluations),
            ("nfe_backward", stats.backwardEvaluations),
            ("peak_bytes", backend.pool.peakBytes - base),
          ])
        }
      }
    }
  }
}

/// The Mackey–Glass forecasting batch of the dde workload: 32 windows of the series (unit
/// spacing, after a transient of 300), each starting where 17 units of true past exist.
struct MackeyGlassProblem {
  let series: [Double]
  let starts: [Int]
  let target: Tensor
  let x0: Tensor
  let backend: any Backend
  static let delay = 17.0
  static let horizon = 34

  init(on backend: any Backend) throws {
    self.backend = backend
    let series = MackeyGlass().series(count: 600, transient: 300)
    var rng = RandomState(seed: 21)
    let starts = (0..<32).map { _ in 17 + Int(rng.nextUniform() * Double(600 - 17 - 35)) }
    let horizon = Self.horizon
    var targets: [Double] = []
    for u in 0...horizon { for s in starts { targets.append(series[s + u]) } }
    self.series = series
    self.starts = starts
    target = try Tensor(targets, shape: [horizon + 1, 32, 1], on: backend)
    x0 = try Tensor(starts.map { series[$0] }, shape: [32, 1], on: backend)
  }

  /// The true series at s + u (u ≤ 0), linearly interpolated between samples.
  func history(_ u: Double) throws -> Tensor {
    let values = starts.map { s -> Double in
      let t = Double(s) + u
      let i = Int(t.rounded(.down))
      let w = t - Double(i)
      return w == 0 ? series[i] : (1 - w) * series[i] + w * series[i + 1]
    }
    return try Tensor(values, shape: [32, 1], on: backend)
  }

  func loss(_ mlp: MLP, gradient: GradientMethod) throws -> (Tensor, ODEStatistics) {
    let field = DelayVectorField(parameters: mlp) { _, x, delayed in
      try mlp(Tensor.concat([x, delayed[0]], axis: 1))
    }
    var options = ODEOptions(solver: .rk4)
    options.stepSize = 1
    let sol = try ddeint(
      field, x0, history: .function(history), delays: [Self.delay],
      times: (0...Self.horizon).map(Double.init), options: options, gradient: gradient)
    return (try (sol.trajectory - target).square().mean(), sol.statistics)
  }
}

private func ddeGradientName(_ gradient: GradientMethod) -> String {
  gradient == .direct ? "direct" : "adjoint"
}

/// ‖a − b‖ / ‖b‖.
private func relativeDifference(_ a: [Double], _ b: [Double]) -> Double {
  var d = 0.0
  var n = 0.0
  for (x, y) in zip(a, b) {
    d += (x - y) * (x - y)
    n += y * y
  }
  return (d / max(n, 1e-300)).squareRoot()
}
