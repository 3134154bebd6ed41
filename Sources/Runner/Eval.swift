import ArgumentParser
import DiffEqNet
import Foundation

/// `runner eval`: accuracy, loss and NFE of a checkpoint on a data set's test split.
struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Evaluate a training checkpoint on a test set.",
    discussion: """
      The model and its settings come from the checkpoint's metadata; --data, --format and \
      --device may point it at other data or hardware. --predictions FILE writes one CSV line \
      per image: index, label, predicted class; for a series model, one per forecast value: \
      series, origin, time, true and predicted values; for latent-ode, one per test observation: \
      series, time, observed or extrapolated, true and predicted values.
      """)

  @Option(help: "A checkpoint.safetensors written by `runner train`.") var checkpoint: String
  @Option(help: "Data folder (default: the one it was trained on).") var data: String?
  @Option(help: "Data format: mnist, fashion-mnist, cifar10 or cifar100.") var format: String?
  @Option(help: "auto, cpu, opencl or opencl:N.") var device: String?
  @Option(help: "Write per-image predictions as CSV to this file.") var predictions: String?

  func run() throws {
    let url = URL(fileURLWithPath: checkpoint)
    var c = try Checkpoint.decode(
      TrainingConfiguration.self, key: "config", in: try SafeTensorsFile.readMetadata(from: url),
      file: url.lastPathComponent)
    if let data { c.data = data }
    if let format { c.format = try DataFormat(parsing: format) }
    if let device { c.device = try DeviceSpec(parsing: device) }
    c.limit = 0
    try c.validate()
    let backend = try makeBackend(c.device, openCL: try openCLOptions())
    if c.model.isDensity {
      let (train, test) = try c.loadDensity()
      let trainer = try Trainer(c, backend: backend, train: train, test: test)
      try trainer.loadCheckpoint(from: url)
      let nll = try trainer.task.testNLL()
      let nfe = trainer.task.functionEvaluations?.forward ?? 0
      print(
        "\(c.model) on \(c.data) (\(test.count) test samples): test NLL \(fixed(nll, 4)) nats/dim (exact trace)  NFE \(nfe) in the last batch"
      )
      return
    }
    if c.model == .latentODE {
      let (train, test) = try c.loadSeries()
      let trainer = try Trainer(c, backend: backend, train: train, test: test, truth: nil)
      try trainer.loadCheckpoint(from: url)
      let (csv, loss, metrics) = try trainer.task.predictionTable()
      print(
        "\(c.model) on \(c.data) (\(test.series.count) test series): negative ELBO \(fixed(loss, 4))  reconstruction MSE \(fixed(metrics["reconstructionMSE"] ?? .nan, 5))  extrapolation MSE \(fixed(metrics["extrapolationMSE"] ?? .nan, 5))  NFE \(trainer.task.functionEvaluations?.forward ?? 0) (last test batch)"
      )
      if let predictions {
        try csv.write(toFile: predictions, atomically: true, encoding: .utf8)
        print("reconstructions and extrapolations written to \(predictions)")
      }
      return
    }
    if c.model.isSeries {
      let (train, test) = try c.loadSeries()
      let trainer = try Trainer(c, backend: backend, train: train, test: test)
      try trainer.loadCheckpoint(from: url)
      let (csv, mse) = try trainer.task.forecastTable()
      print(
        "\(c.model) on \(c.data) (\(test.series.count) test series, horizon \(c.forecastHorizon)): test MSE \(mse)"
      )
      if let predictions {
        try csv.write(toFile: predictions, atomically: true, encoding: .utf8)
        print("forecasts written to \(predictions)")
      }
      return
    }
    let (train, test) = try c.loadData(from: try dataFolder(c.data, givenAsFlag: data != nil))
    let trainer = try Trainer(c, backend: backend, train: train, test: test)
    try trainer.loadCheckpoint(from: url)
    let task = trainer.task
    var lines = ["index,label,predicted"]
    var nfe = 0
    var batches = 0
    let (loss, accuracy) = try task.evaluate(task.testLoader) { batch, predicted in
      for (i, (index, p)) in zip(batch.indices, predicted).enumerated() {
        lines.append("\(index),\(Int(batch.labels[i])),\(p)")
      }
      nfe += task.functionEvaluations?.forward ?? 0
      batches += 1
    }
    print(
      "\(c.model) on \(c.data) (\(test.count) images): loss \(fixed(loss, 4))  accuracy \(fixed(100 * accuracy, 2))%  NFE \(fixed(Double(nfe) / Double(max(1, batches)), 1)) per batch"
    )
    if let predictions {
      try (lines.joined(separator: "\n") + "\n").write(
        toFile: predictions, atomically: true, encoding: .utf8)
      print("predictions written to \(predictions)")
    }
  }
}
