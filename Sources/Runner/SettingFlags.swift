import ArgumentParser
import DiffEqNet
import Foundation

/// The flags of `runner train`, one per `TrainingConfiguration` setting and named after it
/// (`rkSteps` is `--rk-steps`): this declaration is the CLI's one table of settings. `settings()`
/// reads it back by reflection as JSON values under the configuration's keys, so a new setting
/// needs one line here and nothing else.
struct SettingFlags: ParsableArguments {
  @Option(help: "Model.") var model: ModelArchitecture?
  @Option(
    help:
      "Data folder (default: the bundled MNIST subset, found from any directory); series models and latent-ode: spirals, mackey-glass or series:FILE.csv; cnf: two-moons, circles, 8gaussians, pinwheel, checkerboard, 2spirals or table:FILE.csv."
  )
  var data: String?
  @Option(help: "Data format.") var format: DataFormat?
  @Option(help: "auto, cpu, opencl or opencl:N.", transform: DeviceSpec.init(parsing:))
  var device: DeviceSpec?
  @Option(
    help: "ODE solver: dopri5, tsit5, bosh3, rk4, rk38, midpoint, heun, euler, nag[:mu].",
    transform: ODESolver.init(parsing:))
  var solver: ODESolver?
  @Option(help: "Relative tolerance of adaptive solvers.") var rtol: Double?
  @Option(help: "Absolute tolerance of adaptive solvers.") var atol: Double?
  @Option(
    help: "Gradient method: backsolve (alias adjoint), checkpointed or direct.",
    transform: GradientMethod.init(parsing:))
  var gradient: GradientMethod?
  @Option(
    help: "Steps over [0, 1] for fixed-step solvers and RK-Net; per unit of time for series models."
  )
  var rkSteps: Int?
  @Option(help: "Channels of the network (the paper's 64).") var width: Int?
  @Option(help: "Groups of every GroupNorm (default: min(32, width / 2)).") var normGroups: Int?
  @Option(help: "Residual blocks of the ResNet baseline.") var residualBlocks: Int?
  @Option(help: "Use only the first N training and test images, or series (0: all).")
  var limit: Int?
  @Option(help: "Number of epochs.") var epochs: Int?
  @Option(help: "Images per batch.") var batchSize: Int?
  @Option(help: "Peak learning rate.") var lr: Double?
  @Option(help: "Optimiser.") var optimizer: TrainingConfiguration.OptimizerKind?
  @Option(help: "Momentum of SGD.") var momentum: Double?
  @Option(help: "Weight decay (decoupled for adamw).") var weightDecay: Double?
  @Option(help: "Learning-rate schedule after the warm-up.")
  var schedule: TrainingConfiguration.ScheduleKind?
  @Option(help: "Linear warm-up in optimiser steps.") var warmupSteps: Int?
  @Option(help: "Zero padding of random crops (0 disables augmentation).") var cropPadding: Int?
  @Option(help: "Seed of initialisation, shuffling and augmentation.") var seed: UInt64?
  @Option(help: "Output folder.") var out: String?
  @Option(help: "DEQ's fixed-point method: anderson, broyden or iteration (default: anderson).")
  var deqSolver: TrainingConfiguration.FixedPointKind?
  @Option(help: "The implicit gradient's backward solver (default: the forward's).")
  var deqBackwardSolver: TrainingConfiguration.FixedPointKind?
  @Option(
    help:
      "A DEQ solve that ends unconverged at its cap: count it in the metrics or stop the run (default: count)."
  )
  var deqUnconverged: TrainingConfiguration.NonConvergencePolicy?
  @Option(help: "DEQ's relative residual to stop at, forward and backward (default: 1e-3).")
  var deqTolerance: Double?
  @Option(help: "DEQ's cap on evaluations per solve, forward and backward (default: 30).")
  var deqIterations: Int?
  @Option(help: "DEQ's gradient: implicit or jfb (Jacobian-free) (default: implicit).")
  var deqGradient: TrainingConfiguration.EquilibriumGradientKind?
  @Option(help: "Skip DEQs' regulariser weight in w·mean|z0 - z*| (default: 0.01).")
  var skipWeight: Double?
  @Option(
    help:
      "CIFAR ResNets' stochastic-depth survival of the last block, in (0, 1]; 1 disables it (default: 0.5)."
  )
  var survival: Double?
  @Option(help: "ResNeXt models' groups per grouped convolution (default: 4).")
  var cardinality: Int?
  @Option(
    help: "ResNeXt models' channels per group in the first stage, doubling per stage (default: 4).")
  var groupWidth: Int?
  @Option(
    help:
      "The DDNN models' delay tau: in (0, 1) for ddnn-a/ddnn-b (default 0.5), in time units for ddnn-series (default 1)."
  )
  var delay: Double?
  @Option(help: "ddnn-series: train tau (true) or keep it fixed (false, the default).")
  var learnDelay: Bool?
  @Option(help: "Series models: forecast the next H observations (default: 10).") var horizon: Int?
  @Option(
    help:
      "Series models: the test split, series:FILE.csv (default: the last 20% of --data); cnf: table:FILE.csv."
  )
  var testData: String?
  @Option(
    help:
      "cnf: the trace estimator in training: exact, hutchinson (Rademacher) or hutchinson-gaussian (default: hutchinson)."
  )
  var trace: TraceEstimator?
  @Option(help: "latent-ode: the dimension of the latent state z (default: 4).")
  var latentDimension: Int?
  @Option(help: "latent-ode: the likelihood's fixed observation noise sigma (default: 0.3).")
  var observationNoise: Double?
  @Option(
    help:
      "latent-ode: the share of each series' last observations held back to extrapolate, in [0, 1) (default: 0.5)."
  )
  var extrapolatedFraction: Double?
  @Option(help: "Also checkpoint every N batches within an epoch (default: at its end only).")
  var checkpointEvery: Int?
  @Option(
    name: .customLong("on-nan"),
    help: "A NaN or infinite loss or gradient: stop the run (default) or skip the batch.")
  var onNonFinite: TrainingConfiguration.NonFinitePolicy?

  /// The flags given, as JSON values under their configuration keys.
  func settings() throws -> [String: Any] {
    var out: [String: Any] = [:]
    for child in Mirror(reflecting: self).children {
      guard let label = child.label, let flag = child.value as? any SettingFlag else { continue }
      if let value = try flag.jsonValue() { out[String(label.dropFirst())] = value }
    }
    return out
  }
}

/// An `@Option` whose value is a setting: its JSON value when the flag was given.
private protocol SettingFlag {
  func jsonValue() throws -> Any?
}

extension Option: SettingFlag {
  fileprivate func jsonValue() throws -> Any? {
    // Every setting flag is optional: nil when the flag was not given.
    let mirror = Mirror(reflecting: wrappedValue as Any)
    guard mirror.displayStyle == .optional, let given = mirror.children.first?.value else {
      return nil
    }
    guard let encodable = given as? any Encodable else {
      preconditionFailure("setting flag of type \(type(of: given)) is not Encodable")
    }
    let data = try JSONEncoder().encode(encodable)
    return try JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed)
  }
}

extension ModelArchitecture: ExpressibleByArgument {}
extension DataFormat: ExpressibleByArgument {}
extension TraceEstimator: ExpressibleByArgument {}
extension TrainingConfiguration.OptimizerKind: ExpressibleByArgument {}
extension TrainingConfiguration.ScheduleKind: ExpressibleByArgument {}
extension TrainingConfiguration.NonFinitePolicy: ExpressibleByArgument {}
extension TrainingConfiguration.FixedPointKind: ExpressibleByArgument {}
extension TrainingConfiguration.EquilibriumGradientKind: ExpressibleByArgument {}
extension TrainingConfiguration.NonConvergencePolicy: ExpressibleByArgument {}

/// Settings merged in order: `base`, then each layer's keys (a JSON file, the flags). An unknown
/// key, or a value its setting cannot take, is a `ValidationError` naming `source`.
func mergedConfiguration(
  _ base: TrainingConfiguration, _ layer: [String: Any], source: String
) throws -> TrainingConfiguration {
  var merged =
    (try JSONSerialization.jsonObject(with: JSONEncoder().encode(base)) as? [String: Any]) ?? [:]
  let known = Set(merged.keys).union(Mirror(reflecting: base).children.compactMap(\.label))
  for (key, value) in layer {
    guard known.contains(key) else {
      throw ValidationError(
        "\(source): unknown setting '\(key)' (known: \(known.sorted().joined(separator: ", ")))")
    }
    merged[key] = value
  }
  do {
    return try JSONDecoder().decode(
      TrainingConfiguration.self, from: JSONSerialization.data(withJSONObject: merged))
  } catch let DecodingError.dataCorrupted(context) {
    throw ValidationError("\(source): \(context.debugDescription)")
  } catch let error as DecodingError {
    throw ValidationError("\(source): \(error)")
  } catch {
    throw ValidationError("\(source): \(error)")
  }
}

/// The settings in a JSON file: an object of settings (`{"model": "rknet", "batchSize": 128}`),
/// or the `config.json` a run wrote (its `configuration` object).
func settingsFile(_ path: String) throws -> [String: Any] {
  guard let data = FileManager.default.contents(atPath: path) else {
    throw ValidationError("cannot read configuration file \(path)")
  }
  guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
    throw ValidationError("\(path) is not a JSON object")
  }
  if let run = object["configuration"] as? [String: Any], object["version"] != nil {
    return run
  }
  return object
}
