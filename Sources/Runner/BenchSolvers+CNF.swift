import ArgumentParser
import DiffEqNet
import Foundation

extension BenchSolvers {
  /// Training iterations of a continuous normalizing flow in FFJORD's toy setting: two-moons,
  /// batch 512 (a fresh draw each iteration), 3 ConcatSquash layers of 64 with tanh, T = 0.5,
  /// dopri5 at rtol = atol = 1e-5, the backsolve adjoint, Adam at 1e-3; per trace estimator the
  /// median time of an iteration (log-density, gradients, update, loss read back) over
  /// `cnfIterations` iterations from fresh weights after one warm-up, and the mean NFE each
  /// way (scripts/compare/cnf_torchdiffeq.py and cnf_diffrax.py time the same).
  func cnf(on backend: any Backend) throws {
    let batch = 512
    for trace in [TraceEstimator.hutchinson, .exact] {
      var rng = RandomState(seed: 3)
      let flow = try ContinuousNormalizingFlow(
        dimension: 2, width: 64, hidden: 3,
        options: ODEOptions(solver: .dopri5, rtol: 1e-5, atol: 1e-5),
        gradient: .backsolve, trace: trace, rng: &rng, on: backend)
      let optimizer = Adam(learningRate: 1e-3)
      var times: [Double] = []
      var forward = 0
      var backward = 0
      var loss = 0.0
      for iteration in 0...cnfIterations {
        let x = try Tensor(
          ToyDensity.twoMoons.sample(count: batch, rng: &rng), shape: [batch, 2], on: backend)
        let start = Date()
        let (value, grads) = try valueAndGrad(flow) {
          try flow.logDensity(x, rng: &rng).logDensity.mean() * -0.5
        }
        try optimizer.update(flow, gradients: grads)
        loss = try value.item()
        let seconds = Date().timeIntervalSince(start)
        guard iteration > 0 else { continue }
        times.append(seconds)
        forward += flow.lastStatistics.forwardEvaluations
        backward += flow.lastStatistics.backwardEvaluations
      }
      report([
        ("workload", "cnf"), ("config", "two_moons_\(trace.rawValue)"), ("batch", batch),
        ("device", backend.name), ("median_s", median(times)),
        ("iterations", cnfIterations), ("nfe_forward", Double(forward) / Double(cnfIterations)),
        ("nfe_backward", Double(backward) / Double(cnfIterations)), ("final_nll", loss),
      ])
    }
  }
}
