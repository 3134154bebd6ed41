import DiffEqNet
import Foundation

extension BenchSolvers {
  /// One training iteration of the latent ODE on spirals (`runner train --model latent-ode`:
  /// 100 spirals per batch, latent dimension 4, width 25, Dopri5 at rtol = atol = 1e-3, Adam)
  /// through the `Trainer`, with the backsolve adjoint and with direct backpropagation: the
  /// median step time and its evaluations of f. The weights start fresh, so the solver's step
  /// counts are those of the first steps of a run.
  func latent(on backend: any Backend) throws {
    let reps = max(1, min(options.repetitions, 5))
    for gradient in [GradientMethod.backsolve, .direct] {
      var c = TrainingConfiguration()
      c.model = .latentODE
      c.data = "spirals"
      c.limit = 100
      c.batchSize = 100
      c.width = 25
      c.optimizer = .adam
      c.lr = 0.01
      c.weightDecay = 0
      c.gradient = gradient
      c.epochs = reps + 1
      let (train, test) = try c.loadSeries()
      let trainer = try Trainer(c, backend: backend, train: train, test: test, truth: nil)
      // Each epoch is the one step; the report closure runs right after it, before the
      // epoch's evaluation.
      var times: [Double] = []
      var evaluations = (forward: 0, backward: 0)
      for epoch in 0...reps {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try trainer.trainEpoch { progress in
          if epoch > 0 { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
          evaluations = (progress.nfeForward, progress.nfeBackward)
        }
      }
      report([
        ("workload", "latent"), ("config", "spirals_dopri5_\(gradient)_batch100"),
        ("device", backend.name), ("median_s", median(times)),
        ("nfe_forward", evaluations.forward), ("nfe_backward", evaluations.backward),
      ])
    }
  }
}
