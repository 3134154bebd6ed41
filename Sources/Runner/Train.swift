import ArgumentParser
import DiffEqNet
import Foundation

/// `runner train`: trains a classifier from the model zoo on an image data set.
struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Train ODE-Net, RK-Net, a (continuous) DEQ, a DDNN or ResNet on MNIST or CIFAR, a series forecaster, a latent ODE or a continuous normalizing flow.",
    discussion: """
      With no arguments: ODE-Net (dopri5, rtol = atol = 1e-3, backsolve adjoint) on the bundled \
      MNIST subset in data/mnist-5k, written to runs/latest. Settings come from the defaults, \
      then --config FILE (JSON whose keys mirror the flags: "model", "batchSize", "lr", …), then \
      the flags. The output folder receives config.json, metrics.jsonl (one line per epoch), \
      curve.svg (the learning curves) and checkpoint.safetensors (after every epoch, and on \
      Ctrl-C after the current step). --resume continues from that checkpoint with the saved \
      configuration (flags such as --epochs still apply).
      """)

  @OptionGroup(title: "Settings") var settings: SettingFlags
  @Option(
    help: """
      A JSON file of settings (keys as the flags, camelCase), or a run's config.json.
      """)
  var config: String?
  @Flag(help: "Continue from <out>/checkpoint.safetensors.") var resume = false

  func validate() throws {
    _ = try resolvedConfiguration(readingSaved: false)
  }

  /// Defaults, then the saved run (when resuming), then --config, then flags.
  func resolvedConfiguration(readingSaved: Bool = true) throws -> TrainingConfiguration {
    var c = TrainingConfiguration()
    if resume && readingSaved {
      // The checkpoint's own record of its configuration is the authority on what is resumed.
      let url = URL(fileURLWithPath: settings.out ?? c.out)
        .appendingPathComponent("checkpoint.safetensors")
      guard FileManager.default.fileExists(atPath: url.path) else {
        throw ValidationError("--resume: no checkpoint at \(url.path)")
      }
      let metadata = try SafeTensorsFile.readMetadata(from: url)
      c = try Checkpoint.decode(
        TrainingConfiguration.self, key: "config", in: metadata, file: url.lastPathComponent)
    }
    if let config { c = try mergedConfiguration(c, try settingsFile(config), source: config) }
    c = try mergedConfiguration(c, try settings.settings(), source: "flags")
    do { try c.validate() } catch { throw ValidationError("\(error)") }
    return c
  }

  func run() throws {
    let c = try resolvedConfiguration()
    let outDir = URL(fileURLWithPath: c.out)
    let backend = try makeBackend(c.device, openCL: try openCLOptions())
    if c.model.isDensity {
      let (train, test) = try c.loadDensity()
      try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
      let trainer = try Trainer(c, backend: backend, train: train, test: test)
      print(
        "\(c.model): \(trainer.model.parameterCount) parameters on \(backend.name); \(train.count) training and \(test.count) test samples of \(train.dimension) dimensions from \(c.data), trace \(c.traceEstimator)"
      )
      try runTraining(trainer, in: outDir, resume: resume)
      return
    }
    if c.model == .latentODE {
      let (train, test) = try c.loadSeries()
      try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
      let trainer = try Trainer(
        c, backend: backend, train: train, test: test, truth: try c.seriesTruth())
      let (dimension, noise, extrapolated) = c.latentSettings
      print(
        "\(c.model): \(trainer.model.parameterCount) parameters on \(backend.name); \(train.series.count) training and \(test.series.count) test series from \(c.data), latent dimension \(dimension), noise \(noise), last \(extrapolated) of each series extrapolated"
      )
      try runTraining(trainer, in: outDir, resume: resume)
      return
    }
    if c.model.isSeries {
      let (train, test) = try c.loadSeries()
      try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
      let trainer = try Trainer(c, backend: backend, train: train, test: test)
      print(
        "\(c.model): \(trainer.model.parameterCount) parameters on \(backend.name); \(train.series.count) training and \(test.series.count) test series from \(c.data), horizon \(c.forecastHorizon)"
      )
      try runTraining(trainer, in: outDir, resume: resume)
      return
    }
    let (train, test) = try c.loadData(
      from: try dataFolder(c.data, givenAsFlag: settings.data != nil))
    try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
    let trainer = try Trainer(c, backend: backend, train: train, test: test)
    print(
      "\(c.model): \(trainer.model.parameterCount) parameters on \(backend.name); \(train.count) training and \(test.count) test images from \(c.data)"
    )
    try runTraining(trainer, in: outDir, resume: resume)
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

/// How metrics.jsonl spells a loss that is not finite (a skipped run's test loss can be NaN);
/// JSON itself has no such numbers.
let nonFiniteSpelling = (positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")

func writeMetrics(_ history: [EpochMetrics], to url: URL) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys]
  encoder.nonConformingFloatEncodingStrategy = .convertToString(
    positiveInfinity: nonFiniteSpelling.positiveInfinity,
    negativeInfinity: nonFiniteSpelling.negativeInfinity, nan: nonFiniteSpelling.nan)
  let lines = try history.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
  try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
}

func readMetrics(_ url: URL) throws -> [EpochMetrics] {
  guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
  let decoder = JSONDecoder()
  decoder.nonConformingFloatDecodingStrategy = .convertFromString(
    positiveInfinity: nonFiniteSpelling.positiveInfinity,
    negativeInfinity: nonFiniteSpelling.negativeInfinity, nan: nonFiniteSpelling.nan)
  return try text.split(separator: "\n").map {
    try decoder.decode(EpochMetrics.self, from: Data($0.utf8))
  }
}
