import ArgumentParser
import DiffEqNet
import Foundation

/// `runner train`: trains a classifier from the model zoo on an image data set.
struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train ODE-Net, RK-Net or ResNet on MNIST, Fashion-MNIST or CIFAR.",
    discussion: """
      With no arguments: ODE-Net (dopri5, rtol = atol = 1e-3, backsolve adjoint) on the bundled \
      MNIST subset in data/mnist-5k, written to runs/latest. Settings come from the defaults, \
      then --config FILE (JSON whose keys mirror the flags: "model", "batchSize", "lr", …), then \
      the flags. The output folder receives config.json, metrics.jsonl (one line per epoch), \
      curve.svg (the learning curves) and checkpoint.safetensors (after every epoch, and on \
      Ctrl-C after the current step). --resume continues from that checkpoint with the saved \
      configuration (flags such as --epochs still apply).
      """)

  @Option(help: "Model: odenet, rknet or resnet.") var model: String?
  @Option(help: "Data folder.") var data: String?
  @Option(help: "Data format: mnist, fashion-mnist, cifar10 or cifar100.") var format: String?
  @Option(help: "auto, cpu, opencl or opencl:N.") var device: String?
  @Option(help: "ODE solver: dopri5, tsit5, bosh3, rk4, midpoint, heun, euler, nag[:mu].")
  var solver: String?
  @Option(help: "Relative tolerance of adaptive solvers.") var rtol: Double?
  @Option(help: "Absolute tolerance of adaptive solvers.") var atol: Double?
  @Option(help: "Gradient method: adjoint, checkpointed or direct.") var gradient: String?
  @Option(help: "Steps over [0, 1] for fixed-step solvers and RK-Net.") var rkSteps: Int?
  @Option(help: "Channels of the network (the paper's 64).") var width: Int?
  @Option(help: "Residual blocks of the ResNet baseline.") var residualBlocks: Int?
  @Option(help: "Use only the first N training and test images (0: all).") var limit: Int?
  @Option(help: "Number of epochs.") var epochs: Int?
  @Option(help: "Images per batch.") var batchSize: Int?
  @Option(help: "Peak learning rate.") var lr: Double?
  @Option(help: "sgd, adam or adamw.") var optimizer: String?
  @Option(help: "Weight decay (decoupled for adamw).") var weightDecay: Double?
  @Option(help: "Learning-rate schedule: cosine, step or constant.") var schedule: String?
  @Option(help: "Linear warm-up in optimiser steps.") var warmupSteps: Int?
  @Option(help: "Zero padding of random crops (0 disables augmentation).") var cropPadding: Int?
  @Option(help: "Seed of initialisation, shuffling and augmentation.") var seed: UInt64?
  @Option(help: "Output folder.") var out: String?
  @Option(help: "A JSON file of settings (keys as the flags, camelCase).") var config: String?
  @Flag(help: "Continue from <out>/checkpoint.safetensors.") var resume = false

  func validate() throws {
    _ = try resolvedConfiguration(readingSaved: false)
  }

  /// Defaults, then the saved run (when resuming), then --config, then flags.
  func resolvedConfiguration(readingSaved: Bool = true) throws -> TrainingConfiguration {
    var c = TrainingConfiguration()
    let outDir = out ?? c.out
    if resume && readingSaved {
      // The checkpoint's own record of its configuration is the authority on what is resumed.
      let url = URL(fileURLWithPath: outDir).appendingPathComponent("checkpoint.safetensors")
      guard FileManager.default.fileExists(atPath: url.path) else {
        throw ValidationError("--resume: no checkpoint at \(url.path)")
      }
      let metadata = try SafeTensorsFile.read(from: url).metadata
      c = try Checkpoint.decode(
        TrainingConfiguration.self, key: "config", in: metadata, file: url.lastPathComponent)
    }
    if let config { c = try decodeConfiguration(URL(fileURLWithPath: config), base: c) }
    if let model { c.model = model }
    if let data { c.data = data }
    if let format { c.format = format }
    if let device { c.device = device }
    if let solver { c.solver = solver }
    if let rtol { c.rtol = rtol }
    if let atol { c.atol = atol }
    if let gradient { c.gradient = gradient }
    if let rkSteps { c.rkSteps = rkSteps }
    if let width { c.width = width }
    if let residualBlocks { c.residualBlocks = residualBlocks }
    if let limit { c.limit = limit }
    if let epochs { c.epochs = epochs }
    if let batchSize { c.batchSize = batchSize }
    if let lr { c.lr = lr }
    if let optimizer { c.optimizer = optimizer }
    if let weightDecay { c.weightDecay = weightDecay }
    if let schedule { c.schedule = schedule }
    if let warmupSteps { c.warmupSteps = warmupSteps }
    if let cropPadding { c.cropPadding = cropPadding }
    if let seed { c.seed = seed }
    if let out { c.out = out }
    do { try c.validate() } catch { throw ValidationError("\(error)") }
    return c
  }

  /// Settings from a JSON file; keys it omits keep their values in `base`.
  func decodeConfiguration(_ url: URL, base: TrainingConfiguration) throws -> TrainingConfiguration
  {
    guard let data = FileManager.default.contents(atPath: url.path) else {
      throw ValidationError("cannot read configuration file \(url.path)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
      throw ValidationError("\(url.path) is not a JSON object")
    }
    var merged =
      (try JSONSerialization.jsonObject(with: JSONEncoder().encode(base)) as? [String: Any]) ?? [:]
    for (key, value) in object {
      guard merged[key] != nil else {
        throw ValidationError(
          "\(url.path): unknown setting '\(key)' (known: \(merged.keys.sorted().joined(separator: ", ")))"
        )
      }
      merged[key] = value
    }
    do {
      return try JSONDecoder().decode(
        TrainingConfiguration.self, from: JSONSerialization.data(withJSONObject: merged))
    } catch {
      throw ValidationError("\(url.path): \(error)")
    }
  }

  func run() throws {
    let c = try resolvedConfiguration()
    let outDir = URL(fileURLWithPath: c.out)
    try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
    let backend = try makeBackend(try DeviceSpec(parsing: c.device), openCL: try openCLOptions())
    let (train, test) = try c.loadData()
    let trainer = try Trainer(c, backend: backend, train: train, test: test)
    let checkpoint = outDir.appendingPathComponent("checkpoint.safetensors")
    let metricsURL = outDir.appendingPathComponent("metrics.jsonl")
    var history: [EpochMetrics] = []
    if resume {
      try trainer.loadCheckpoint(from: checkpoint)
      history = try readMetrics(metricsURL).filter { $0.epoch <= trainer.epoch }
      if trainer.isFinished {
        print(
          "nothing to resume: \(c.model) has completed \(trainer.epoch) of \(c.epochs) epochs (raise --epochs to go on)"
        )
        return
      }
      print("resuming \(c.model) at epoch \(trainer.epoch + 1), batch \(trainer.batch + 1)")
    }
    try writeJSON(
      ResolvedRun(configuration: c, device: backend.name, parameters: trainer.model.parameterCount),
      to: outDir.appendingPathComponent("config.json"))
    print(
      "\(c.model): \(trainer.model.parameterCount) parameters on \(backend.name); \(train.count) training and \(test.count) test images from \(c.data)"
    )

    let interrupt = InterruptHandler(trainer.stopRequested)
    defer { interrupt.restore() }
    let progress = ProgressDisplay()
    while !trainer.isFinished {
      guard let m = try trainer.trainEpoch(progress.update) else {
        try trainer.saveCheckpoint(to: checkpoint)
        progress.finishLine()
        print(
          "stopped at epoch \(trainer.epoch + 1), batch \(trainer.batch); checkpoint written to \(checkpoint.path) (continue with --resume)"
        )
        return
      }
      try trainer.saveCheckpoint(to: checkpoint)
      history.append(m)
      try writeMetrics(history, to: metricsURL)
      try LearningCurve(history).svg().write(
        to: outDir.appendingPathComponent("curve.svg"), atomically: true, encoding: .utf8)
      progress.finishLine()
      print(
        String(
          format:
            "epoch %d/%d  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  NFE %.1f/%.1f  %.1f s  %.0f img/s",
          m.epoch, c.epochs, m.trainLoss, 100 * m.trainAccuracy, m.testLoss, 100 * m.testAccuracy,
          m.nfeForward, m.nfeBackward, m.seconds, m.imagesPerSecond))
      fflush(nil)
      if trainer.stopRequested.isSet {
        print("stopped after epoch \(m.epoch); continue with --resume")
        return
      }
    }
  }
}

/// `config.json`: the resolved settings and what they ran on.
struct ResolvedRun: Codable {
  var configuration: TrainingConfiguration
  var device: String
  var parameters: Int
  var version = "DiffEqNet 0.1"
}

func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
  try encoder.encode(value).write(to: url, options: .atomic)
}

func writeMetrics(_ history: [EpochMetrics], to url: URL) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys]
  let lines = try history.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
  try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
}

func readMetrics(_ url: URL) throws -> [EpochMetrics] {
  guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
  return try text.split(separator: "\n").map {
    try JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8))
  }
}
