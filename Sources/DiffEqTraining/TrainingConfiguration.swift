import DiffEqCore
import DiffEqData
import DiffEqModels
import DiffEqODE
import Foundation
import Kernels

/// Everything that defines a training run; saved as `config.json` and in every checkpoint, and
/// read back by `--resume`. Keys mirror the CLI's flags; each setting is a type, parsed once, and
/// spelled in JSON as on the command line (`"solver": "nag:0.9"`, `"gradient": "backsolve"`).
public struct TrainingConfiguration: Codable, Sendable, Equatable {
  public var model: ModelArchitecture = .odenet
  /// A folder holding the data set's files, relative to the working directory. The default names
  /// the MNIST subset bundled with DiffEqNet, which `runner` also finds from elsewhere.
  public var data = TrainingConfiguration.bundledData
  public var format: DataFormat = .mnist
  public var device: DeviceSpec = .auto
  public var solver: ODESolver = .dopri5
  public var rtol = 1e-3
  public var atol = 1e-3
  public var gradient: GradientMethod = .backsolve
  public var rkSteps = 4
  /// Channels after the stem's first convolution (the paper's 64).
  public var width = 64
  /// Groups of every GroupNorm (nil: `GroupNorm.defaultGroups(channels: width)`).
  public var normGroups: Int? = nil
  /// Residual blocks of the ResNet baseline.
  public var residualBlocks = 6
  /// Use only the first `limit` training and test images, or series for the series models (0:
  /// all), for quick runs and tests.
  public var limit = 0
  public var epochs = 10
  public var batchSize = 64
  /// Peak learning rate. SGD with Nesterov momentum at 0.1 is torchdiffeq's recipe for ODE-Net
  /// and, measured here, learns this architecture (GroupNorm, pooled head) far faster than Adam.
  public var lr = 0.1
  public var optimizer: OptimizerKind = .sgd
  public var momentum = 0.9
  public var weightDecay = 5e-4
  public var schedule: ScheduleKind = .cosine
  /// Linear warm-up length in optimiser steps.
  public var warmupSteps = 30
  /// Zero padding for random crops (0 disables); CIFAR also flips horizontally.
  public var cropPadding = 2
  /// How pixels are scaled before the model sees them: part of the model (nil: the data format's
  /// standard normalisation). A model imported from torchdiffeq takes raw [0, 1] pixels
  /// (`Normalization.identity`).
  public var normalization: Normalization? = nil
  public var seed: UInt64 = 0
  public var out = "runs/latest"
  /// Also checkpoint every this many batches within an epoch (nil: at the end of each epoch only),
  /// so that a long epoch killed late loses little. Optional so that runs saved before it existed
  /// still decode.
  public var checkpointEvery: Int? = nil
  /// What a non-finite loss or gradient does (nil: `.stop`).
  public var onNonFinite: NonFinitePolicy? = nil
  /// DEQ's fixed-point method (nil: Anderson, memory 5, no damping).
  public var deqSolver: FixedPointKind? = nil
  /// The method of the implicit gradient's backward solve (nil: `deqSolver`'s).
  public var deqBackwardSolver: FixedPointKind? = nil
  /// What a DEQ solve that reaches its cap unconverged does (nil: `.count`).
  public var deqUnconverged: NonConvergencePolicy? = nil
  /// DEQ's relative residual ‖f(z) − z‖ / ‖f(z)‖ to stop at, forward and backward (nil: 1e-3).
  public var deqTolerance: Double? = nil
  /// DEQ's cap on evaluations of f per solve, forward and backward (nil: 30).
  public var deqIterations: Int? = nil
  /// DEQ's gradient (nil: `.implicit`).
  public var deqGradient: EquilibriumGradientKind? = nil
  /// The Skip DEQs' regulariser weight λ in λ·mean|z₀ − z*| (nil: 0.01, the paper's).
  public var skipWeight: Double? = nil
  /// The CIFAR ResNets' and ResNeXts' (`resnet20` … `lmresnext`) stochastic-depth survival p_L
  /// of the last block, in (0, 1]; 1 disables it (nil: 0.5, the paper's).
  public var survival: Double? = nil
  /// The ResNeXt models' groups per grouped convolution (nil: 4).
  public var cardinality: Int? = nil
  /// The ResNeXt models' channels per group in the first stage, doubling per stage (nil: 4).
  public var groupWidth: Int? = nil
  /// The DDNN models' delay τ: in (0, 1) for ddnn-a and ddnn-b (nil: 0.5), in the series' time
  /// units for ddnn-series (nil: 1).
  public var delay: Double? = nil
  /// ddnn-series: train τ, starting at `delay` (nil: false, a fixed τ).
  public var learnDelay: Bool? = nil
  /// The series models' forecast: the next this many observations (nil: 10).
  public var horizon: Int? = nil
  /// The series models' test split, `series:FILE.csv` (nil: the last 20% of `data`'s series);
  /// the flow's, `table:FILE.csv` (nil: a fresh draw of a generated density, else the last 20%
  /// of the table's rows).
  public var testData: String? = nil
  /// The flow's (`cnf`) estimator of tr(∂f/∂z) in training (nil: `.hutchinson`, FFJORD's);
  /// evaluation always takes the exact trace.
  public var trace: TraceEstimator? = nil
  /// latent-ode: the dimension of z (nil: 4, torchdiffeq's example).
  public var latentDimension: Int? = nil
  /// latent-ode: the fixed standard deviation σ of the Gaussian likelihood (nil: 0.3).
  public var observationNoise: Double? = nil
  /// latent-ode: the share of each series' last observations held back from the encoder and
  /// the loss, to be extrapolated (nil: 0.5).
  public var extrapolatedFraction: Double? = nil

  /// The fixed-point methods a DEQ can use.
  public enum FixedPointKind: String, Sendable, NamedSetting {
    public static let settingName = "DEQ solver"
    /// Anderson acceleration, memory 5, mixing 1.
    case anderson
    /// Plain iteration z ← f(z, x).
    case iteration
    /// Limited-memory Broyden, memory 8, no line search.
    case broyden

    var method: FixedPointMethod {
      switch self {
      case .anderson: .anderson(memory: 5, mixing: 1)
      case .iteration: .iteration
      case .broyden: .broyden(memory: 8)
      }
    }
  }

  /// What a DEQ solve, forward or backward, that stops at its cap unconverged does.
  public enum NonConvergencePolicy: String, Sendable, NamedSetting {
    public static let settingName = "DEQ non-convergence policy"
    /// Go on with the last iterate, and count the batch in the metrics' `trainUnconverged`.
    case count
    /// Stop the run with an error naming the epoch, the batch and the residual.
    case stop
  }

  /// How a DEQ's gradient is computed.
  public enum EquilibriumGradientKind: String, Sendable, NamedSetting {
    public static let settingName = "DEQ gradient"
    /// The implicit function theorem, its linear system solved by `deqSolver`.
    case implicit
    /// The Jacobian-free approximation: the cotangent of z* taken as the adjoint.
    case jfb
  }

  /// What a batch whose loss or gradients are NaN or infinite does to the run.
  public enum NonFinitePolicy: String, Sendable, NamedSetting {
    public static let settingName = "non-finite policy"
    /// Stop with an error naming the epoch and batch; the last checkpoint is kept.
    case stop
    /// Leave the parameters and the optimiser untouched for this batch, count it
    /// (`EpochMetrics.skippedBatches`) and go on.
    case skip
  }

  /// The data folder of the bundled MNIST subset, as the default `data` spells it.
  public static let bundledData = "data/mnist-5k"

  public init() {}

  /// The optimisers a run can use.
  public enum OptimizerKind: String, Sendable, NamedSetting {
    public static let settingName = "optimizer"
    /// SGD with Nesterov momentum (`momentum`) and L2 weight decay.
    case sgd
    /// Adam with L2 weight decay.
    case adam
    /// Adam with decoupled weight decay.
    case adamw
  }

  /// The learning-rate schedules a run can use (after the linear warm-up).
  public enum ScheduleKind: String, Sendable, NamedSetting {
    public static let settingName = "schedule"
    case constant
    /// ×0.1 at every third of the run.
    case step
    /// Cosine decay to 1% of `lr`.
    case cosine
  }

  /// The largest values `validate` accepts: far beyond any run this library is for, and far
  /// below where a count would overflow or an allocation could not be made.
  public enum Limits {
    public static let epochs = 1_000_000
    public static let batchSize = 1 << 20
    /// The same as `ODEOptions.maxSteps`' default: more steps over [0, 1] is a hang, not a run.
    public static let rkSteps = 100_000
    public static let width = 4096
    public static let residualBlocks = 1000
    public static let cropPadding = 64
    public static let warmupSteps = 1 << 40
    /// Points a generated density (`--data two-moons`, …) draws for training (`limit`).
    public static let generatedSamples = 1 << 24
  }

  /// Throws a message naming the first invalid setting (and the bound it broke).
  public func validate() throws {
    func fail(_ s: String) -> Error { TensorError.invalidArgument(op: "configuration", reason: s) }
    func check(_ name: String, _ value: Int, _ range: ClosedRange<Int>) throws {
      guard range.contains(value) else {
        throw fail("\(name) must lie in \(range.lowerBound)...\(range.upperBound), got \(value)")
      }
    }
    try check("epochs", epochs, 1...Limits.epochs)
    try check("batch size", batchSize, 1...Limits.batchSize)
    try check("rk-steps", rkSteps, 1...Limits.rkSteps)
    try check("width", width, 1...Limits.width)
    try check("residual blocks", residualBlocks, 1...Limits.residualBlocks)
    try check("crop padding", cropPadding, 0...Limits.cropPadding)
    try check("warm-up steps", warmupSteps, 0...Limits.warmupSteps)
    try check("limit", limit, 0...Int.max)
    if let n = checkpointEvery { try check("checkpoint-every", n, 1...Int.max) }
    if let n = deqIterations { try check("DEQ iterations", n, 1...Limits.rkSteps) }
    if let w = skipWeight, !(w >= 0 && w.isFinite) {
      throw fail("skip weight must be finite and not negative, got \(w)")
    }
    if let p = survival, !(p > 0 && p <= 1) {
      throw fail("survival must lie in (0, 1] (1 disables stochastic depth), got \(p)")
    }
    if let n = cardinality { try check("cardinality", n, 1...Limits.width) }
    if let n = groupWidth { try check("group width", n, 1...Limits.width) }
    if let tau = delay, model.isSeries, !(tau > 0 && tau.isFinite) {
      throw fail("delay must be positive and finite, got \(tau)")
    }
    if let tau = delay, !model.isSeries, !(tau > 0 && tau < 1) {
      throw fail("delay must lie in (0, 1) (the block integrates over [0, 1]), got \(tau)")
    }
    if model.isDelay || model == .ddnnSeries, !solver.isAdaptive,
      1 / Double(rkSteps) > modelDelay * (1 + 1e-9)
    {
      throw fail(
        "the step 1/\(rkSteps) of \(solver) exceeds the delay \(modelDelay): use at least \(Int((1 / modelDelay).rounded(.up))) rk-steps"
      )
    }
    if let h = horizon { try check("horizon", h, 1...100_000) }
    if learnDelay == true && model != .ddnnSeries {
      throw fail("learn-delay is a ddnn-series setting, not \(model)'s")
    }
    if model.readsSeries != Self.isSeriesData(data) {
      throw fail(
        model.readsSeries
          ? "\(model) reads series: --data spirals, mackey-glass or series:FILE.csv"
          : "\(model) classifies images: --data \(data) names series")
    }
    if model != .latentODE,
      latentDimension != nil || observationNoise != nil
        || extrapolatedFraction != nil
    {
      throw fail(
        "latent-dimension, observation-noise and extrapolated-fraction are latent-ode settings")
    }
    if let n = latentDimension { try check("latent dimension", n, 1...Limits.width) }
    if let s = observationNoise, !(s > 0 && s.isFinite) {
      throw fail("observation noise must be positive and finite, got \(s)")
    }
    if let f = extrapolatedFraction, !(f >= 0 && f < 1) {
      throw fail("extrapolated fraction must lie in [0, 1), got \(f)")
    }
    if model.isDensity != Self.isDensityData(data) {
      throw fail(
        model.isDensity
          ? "\(model) estimates densities: --data \(ToyDensity.allCases.map(\.rawValue).joined(separator: "|")) or table:FILE.csv, not \(data)"
          : "\(model) does not estimate densities: --data \(data) names one")
    }
    if let t = testData {
      let prefix = model.isDensity ? "table:" : "series:"
      guard t.hasPrefix(prefix) else { throw fail("test data must be \(prefix)FILE.csv, got \(t)") }
    }
    if ToyDensity(rawValue: data) != nil {
      try check("limit (generated points)", limit, 0...Limits.generatedSamples)
    }
    if trace != nil && !model.isDensity {
      throw fail("trace is a cnf setting, not \(model)'s")
    }
    if let t = deqTolerance, !(t > 0 && t.isFinite) {
      throw fail("DEQ tolerance must be positive and finite, got \(t)")
    }
    guard lr > 0, lr.isFinite else { throw fail("learning rate must be positive, got \(lr)") }
    guard rtol > 0, atol > 0, rtol.isFinite, atol.isFinite else {
      throw fail("tolerances must be positive and finite")
    }
    guard momentum >= 0, momentum < 1 else { throw fail("momentum must lie in [0, 1)") }
    guard weightDecay >= 0, weightDecay.isFinite else {
      throw fail("weight decay must be finite and not negative")
    }
    if let g = normGroups, g < 1 || width % g != 0 {
      throw fail("norm groups must divide the width \(width), got \(g)")
    }
    if case .nag(let mu) = solver, !(mu >= 0 && mu < 1) {
      throw fail("NAG momentum must lie in [0, 1), got \(mu)")
    }
  }

  /// The model-zoo configuration these settings describe, for a data set's shape.
  public func modelConfiguration(channels: Int, classes: Int) -> ModelZoo.Configuration {
    var c = ModelZoo.Configuration()
    c.inputChannels = channels
    c.classes = classes
    c.seed = seed
    c.ode = ODEOptions(solver: solver, rtol: rtol, atol: atol)
    if !c.ode.solver.isAdaptive { c.ode.steps = rkSteps }
    c.gradient = gradient
    c.rkSteps = rkSteps
    c.width = width
    c.normGroups = normGroups
    c.residualBlocks = residualBlocks
    let strict = deqUnconverged == .stop
    let solve = FixedPointOptions(
      method: (deqSolver ?? .anderson).method, tolerance: deqTolerance ?? 1e-3,
      maxIterations: deqIterations ?? 30, requireConvergence: strict)
    var backward = solve
    backward.method = (deqBackwardSolver ?? deqSolver ?? .anderson).method
    c.deqForward = solve
    c.skipWeight = skipWeight ?? 0.01
    c.survival = survival ?? 0.5
    c.cardinality = cardinality ?? 4
    c.groupWidth = groupWidth ?? 4
    c.delay = modelDelay
    c.learnDelay = learnDelay ?? false
    if model.readsSeries && !solver.isAdaptive {
      // A series' forecast spans its own time units: rk-steps per unit of time.
      c.ode.steps = nil
      c.ode.stepSize = 1 / Double(rkSteps)
    }
    // The continuous DEQ integrates with the run's solver when it is adaptive, to the DEQ
    // tolerance, with the DEQ iteration cap as its step cap.
    c.deqSteadyState = SteadyStateOptions(
      solver: solver.isAdaptive ? solver : .dopri5, rtol: solve.tolerance,
      atol: solve.tolerance, maxSteps: solve.maxIterations, requireConvergence: strict)
    c.deqGradient = deqGradient == .jfb ? .jacobianFree : .implicit(backward)
    return c
  }

  /// Whether `data` names series (`spirals`, `mackey-glass`, `series:FILE.csv`) rather than an
  /// image folder.
  public static func isSeriesData(_ data: String) -> Bool {
    data == "spirals" || data == "mackey-glass" || data.hasPrefix("series:")
  }

  /// Whether `data` names a density's samples: a generated one (`ToyDensity`) or
  /// `table:FILE.csv`.
  public static func isDensityData(_ data: String) -> Bool {
    ToyDensity(rawValue: data) != nil || data.hasPrefix("table:")
  }

  /// The samples a drawn density gives for training (`limit`, else 10,000) and testing (2,000).
  public var densitySampleCounts: (train: Int, test: Int) { (limit > 0 ? limit : 10_000, 2_000) }

  /// The flow's training and test samples: a generated density's draws from `seed` (the test
  /// split from another stream), or a table (relative paths from the working directory) split by
  /// `testData`, else its last 20% of rows; a table's columns are standardised by the training
  /// split's means and standard deviations.
  public func loadDensity() throws -> (train: TableDataset, test: TableDataset) {
    if let density = ToyDensity(rawValue: data) {
      let (n, m) = densitySampleCounts
      return (
        try density.dataset(count: n, seed: seed),
        try density.dataset(count: m, seed: seed ^ 0x7E57_D47A_5EED_0001)
      )
    }
    func read(_ spec: String) throws -> TableDataset {
      try TableDataset.readCSV(URL(fileURLWithPath: String(spec.dropFirst(6))))
    }
    let all = try read(data)
    let (train, test) = try testData.map { (all, try read($0)) } ?? all.heldOut()
    guard train.dimension == test.dimension else {
      throw DatasetError.invalidArgument(
        "\(train.name) has \(train.dimension) columns, the test table \(test.name) \(test.dimension)"
      )
    }
    let (mean, std) = train.columnStatistics()
    return (train.standardized(mean: mean, std: std), test.standardized(mean: mean, std: std))
  }

  /// The flow's training trace estimator (`trace`, else Hutchinson's with Rademacher probes).
  public var traceEstimator: TraceEstimator { trace ?? .hutchinson }

  /// The series of `data` (relative paths from the working directory; `spirals` drawn from
  /// `seed`) and the test split: `testData`'s, else the last 20% of the series; with `limit` > 0,
  /// the first `limit` series of each.
  public func loadSeries() throws -> (train: TimeSeriesDataset, test: TimeSeriesDataset) {
    func read(_ spec: String) throws -> TimeSeriesDataset {
      switch spec {
      case "spirals": try Spirals(seed: seed).generate().observed
      case "mackey-glass": try TimeSeriesDataset.mackeyGlass()
      default: try TimeSeriesDataset.readCSV(URL(fileURLWithPath: String(spec.dropFirst(7))))
      }
    }
    let all = try read(data)
    let (train, test) = try testData.map { (all, try read($0)) } ?? all.heldOut()
    return (try train.first(limit), try test.first(limit))
  }

  /// The noiseless spirals of the test split when `data` is `spirals` and no `testData` is
  /// given (what a latent ODE's plot draws as the truth), else nil.
  public func seriesTruth() throws -> TimeSeriesDataset? {
    guard data == "spirals", testData == nil else { return nil }
    return try Spirals(seed: seed).generate().truth.heldOut().test.first(limit)
  }

  /// The delay τ the model uses (`delay`, else 0.5 for image models and 1 for ddnn-series).
  public var modelDelay: Double { delay ?? (model.isSeries ? 1 : 0.5) }

  /// latent-ode's settings with their defaults.
  public var latentSettings: (dimension: Int, noise: Double, extrapolated: Double) {
    (latentDimension ?? 4, observationNoise ?? 0.3, extrapolatedFraction ?? 0.5)
  }

  /// The series models' forecast horizon (`horizon`, else 10).
  public var forecastHorizon: Int { horizon ?? 10 }

  public func makeOptimizer() -> any Optimizer {
    switch optimizer {
    case .sgd:
      return SGD(learningRate: lr, momentum: momentum, nesterov: true, weightDecay: weightDecay)
    case .adam: return Adam(learningRate: lr, weightDecay: weightDecay)
    case .adamw: return Adam(learningRate: lr, weightDecay: weightDecay, decoupled: true)
    }
  }

  public func learningRateSchedule(totalSteps: Int) -> LearningRateSchedule {
    switch schedule {
    case .constant: return .constant
    case .step: return .step(every: max(1, totalSteps / 3), gamma: 0.1)
    case .cosine: return .cosine(totalSteps: totalSteps, minimum: lr * 0.01)
    }
  }

  /// The training and test sets from `folder` (default: `data`, relative to the working
  /// directory), their first `limit` images when `limit` > 0.
  public func loadData(from folder: URL? = nil) throws -> (train: ImageDataset, test: ImageDataset)
  {
    let dir = folder ?? URL(fileURLWithPath: data)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory),
      isDirectory.boolValue
    else {
      throw DatasetError.invalidArgument("data folder '\(dir.path)' does not exist")
    }
    let train = try format.load(dir, split: .train)
    let test = try format.load(dir, split: .test)
    return (try Self.first(limit, of: train), try Self.first(limit, of: test))
  }

  static func first(_ n: Int, of d: ImageDataset) throws -> ImageDataset {
    guard n > 0, n < d.count else { return d }
    return try ImageDataset(
      name: d.name, images: Array(d.images[..<(n * d.imageSize)]), labels: Array(d.labels[..<n]),
      channels: d.channels, height: d.height, width: d.width, classes: d.classes)
  }

  /// How pixels are scaled for the model: `normalization`, else the format's standard one.
  public var inputNormalization: Normalization {
    normalization ?? format.standardNormalization
  }
}
