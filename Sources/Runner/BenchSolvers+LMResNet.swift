import ArgumentParser
import DiffEqNet
import Foundation

extension BenchSolvers {
  /// One training step (forward, cross-entropy, backward, SGD with Nesterov momentum, the loss
  /// read back) of resnet20 and lmresnet20 at batch 128 on 1×28×28 (MNIST's shape) and 3×32×32
  /// (CIFAR's), random images and labels, fresh weights: the median over the repetitions after a
  /// warm-up. Stochastic depth is off (survival 1) so that every step does the same work, except
  /// in the `lmresnet20_sd` row (survival 0.5: the drops vary by step).
  func lmresnet(on backend: any Backend) throws {
    let reps = max(1, min(options.repetitions, 7))
    let batch = 128
    for (channels, side) in [(1, 28), (3, 32)] {
      var rng = RandomState(seed: 5)
      let x = try Tensor.normal([batch, channels, side, side], rng: &rng, on: backend)
      let labels = try Tensor(
        (0..<batch).map { _ in Double(rng.next() % 10) }, shape: [batch], on: backend)
      for (config, architecture, survival) in [
        ("resnet20", ModelArchitecture.resnet20, 1.0), ("lmresnet20", .lmresnet20, 1.0),
        ("lmresnet20_sd", .lmresnet20, 0.5),
      ] {
        var c = ModelZoo.Configuration()
        c.inputChannels = channels
        c.survival = survival
        let model = try ModelZoo.make(architecture, c, on: backend)
        let optimizer = SGD(learningRate: 0.01, momentum: 0.9, nesterov: true, weightDecay: 5e-4)
        let t = try medianTime(repetitions: reps) {
          let (loss, grads) = try valueAndGrad(model) {
            try model(x).softmaxCrossEntropy(labels: labels)
          }
          try optimizer.update(model, gradients: grads)
          _ = try loss.item()
        }
        report([
          ("workload", "lmresnet"), ("config", config), ("batch", batch),
          ("shape", "\(channels)x\(side)x\(side)"), ("device", backend.name), ("median_s", t),
          ("samples_per_s", Double(batch) / t), ("parameters", model.parameterCount),
        ])
      }
    }
  }
}
