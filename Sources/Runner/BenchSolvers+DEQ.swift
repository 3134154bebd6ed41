import ArgumentParser
import DiffEqNet
import Foundation

extension BenchSolvers {
  /// The DEQ variants' block at the MNIST classifier's shape (batch 64, 64 channels, 6×6, f of
  /// `DEQBlock`, fresh weights), on a random input: per variant the median forward solve and
  /// backward (implicit solve + VJP) times, the evaluations of f and the final residuals. The
  /// `deq_anderson_cap30` row runs exactly 30 forward and 30 backward evaluations (an
  /// unreachable tolerance), the fixed work `scripts/compare/deq_torchdeq.py` times in torchdeq.
  func deq(on backend: any Backend) throws {
    let reps = max(1, min(options.repetitions, 5))
    var rng = RandomState(seed: 3)
    let x = try Tensor.normal([64, 64, 6, 6], rng: &rng, on: backend)
    let r = try Tensor.normal([64, 64, 6, 6], rng: &rng, on: backend)
    let cap = FixedPointOptions(
      method: .anderson(memory: 5, mixing: 1), tolerance: 1e-3, maxIterations: 30)
    let rows: [(String, ModelArchitecture, FixedPointOptions, EquilibriumGradient)] = [
      ("deq_anderson_implicit", .deq, cap, .implicit(cap)),
      (
        "deq_broyden_implicit", .deq, with(cap) { $0.method = .broyden(memory: 8) },
        .implicit(with(cap) { $0.method = .broyden(memory: 8) })
      ),
      (
        "deq_iteration_implicit", .deq, with(cap) { $0.method = .iteration },
        .implicit(with(cap) { $0.method = .iteration })
      ),
      ("deq_anderson_jfb", .deq, cap, .jacobianFree),
      (
        "deq_anderson_cap30", .deq, with(cap) { $0.tolerance = 1e-30 },
        .implicit(with(cap) { $0.tolerance = 1e-30 })
      ),
      ("cdeq_dopri5_implicit", .cdeq, cap, .implicit(cap)),
      ("skip-deq_anderson_implicit", .skipDEQ, cap, .implicit(cap)),
      ("skip-cdeq_dopri5_implicit", .skipCDEQ, cap, .implicit(cap)),
      ("skipreg-deq_anderson_implicit", .skipRegDEQ, cap, .implicit(cap)),
      ("skipreg-cdeq_dopri5_implicit", .skipRegCDEQ, cap, .implicit(cap)),
    ]
    for (config, architecture, forward, gradient) in rows {
      var c = ModelZoo.Configuration()
      c.deqForward = forward
      c.deqGradient = gradient
      c.deqSteadyState = SteadyStateOptions(
        solver: .dopri5, rtol: forward.tolerance, atol: forward.tolerance,
        maxSteps: forward.maxIterations)
      let block = try deqBlock(of: try ModelZoo.make(architecture, c, on: backend))
      var forwardTimes: [Double] = []
      var backwardTimes: [Double] = []
      var statistics = EquilibriumStatistics()
      for rep in 0...reps {
        let start = DispatchTime.now().uptimeNanoseconds
        var solved = start
        let (loss, _) = try valueAndGrad(block) {
          var loss = try (block(x) * r).mean()
          if let extra = block.regularizer { loss = try loss + extra }
          try backend.synchronize()
          solved = DispatchTime.now().uptimeNanoseconds
          return loss
        }
        _ = try loss.item()
        let end = DispatchTime.now().uptimeNanoseconds
        statistics = block.lastStatistics
        if rep > 0 {  // the first is a warm-up
          forwardTimes.append(Double(solved - start) / 1e9)
          backwardTimes.append(Double(end - solved) / 1e9)
        }
      }
      report([
        ("workload", "deq"), ("config", config), ("batch", 64), ("shape", "64x6x6"),
        ("device", backend.name), ("forward_s", median(forwardTimes)),
        ("backward_s", median(backwardTimes)),
        ("forward_iterations", statistics.forwardIterations),
        ("backward_iterations", statistics.backwardIterations),
        // null where there was no such solve (JFB's backward)
        ("forward_residual", statistics.forwardResidual),
        ("backward_residual", statistics.backwardResidual),
      ])
    }
  }
}

/// The DEQ block of a zoo classifier.
private func deqBlock(of classifier: ImageClassifier) throws -> DEQBlock {
  guard let block = classifier.equilibriumBlock else {
    throw ValidationError("\(classifier.architecture) has no DEQ block")
  }
  return block
}

private func with<T>(_ value: T, _ change: (inout T) -> Void) -> T {
  var copy = value
  change(&copy)
  return copy
}
