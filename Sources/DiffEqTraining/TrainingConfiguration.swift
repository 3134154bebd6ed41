import DiffEqCore
import DiffEqData
import DiffEqModels
import DiffEqODE
import Foundation
import Kernels

/// Everything that defines a training run; saved as `config.json` and in every checkpoint, and
/// read back by `--resume`. Keys mirror the CLI's flags.
public struct TrainingConfiguration: Codable, Sendable, Equatable {
  public var model = "odenet"
  /// A folder holding the data set's files.
  public var data = "data/mnist-5k"
  /// `mnist` (also Fashion-MNIST: the same IDX files), `cifar10` or `cifar100`.
  public var format = "mnist"
  public var device = "auto"
  public var solver = "dopri5"
  public var rtol = 1e-3
  public var atol = 1e-3
  /// `direct`, `adjoint` (backsolve) or `checkpointed`.
  public var gradient = "adjoint"
  public var rkSteps = 4
  /// Channels after the stem's first convolution (the paper's 64).
  public var width = 64
  /// Residual blocks of the ResNet baseline.
  public var residualBlocks = 6
  /// Use only the first `limit` training and test images (0: all), for quick runs and tests.
  public var limit = 0
  public var epochs = 10
  public var batchSize = 64
  /// Peak learning rate. SGD with Nesterov momentum at 0.1 is torchdiffeq's recipe for ODE-Net
  /// and, measured here, learns this architecture (GroupNorm, pooled head) far faster than Adam.
  public var lr = 0.1
  /// `sgd`, `adam` or `adamw`.
  public var optimizer = "sgd"
  public var momentum = 0.9
  public var weightDecay = 5e-4
  /// `constant`, `step` or `cosine`.
  public var schedule = "cosine"
  /// Linear warm-up length in optimiser steps.
  public var warmupSteps = 30
  /// Zero padding for random crops (0 disables); CIFAR also flips horizontally.
  public var cropPadding = 2
  public var seed: UInt64 = 0
  public var out = "runs/latest"

  public init() {}

  /// Throws a message naming the first invalid setting.
  public func validate() throws {
    func fail(_ s: String) -> Error { TensorError.invalidArgument(op: "configuration", reason: s) }
    guard ModelZoo.names.contains(model) else {
      throw fail("unknown model '\(model)' (known: \(ModelZoo.names.joined(separator: ", ")))")
    }
    guard ["mnist", "fashion-mnist", "cifar10", "cifar100"].contains(format) else {
      throw fail("unknown data format '\(format)' (mnist, fashion-mnist, cifar10, cifar100)")
    }
    _ = try DeviceSpec(parsing: device)
    _ = try ODESolver(parsing: solver)
    guard gradientMethod != nil else {
      throw fail("unknown gradient '\(gradient)' (direct, adjoint, checkpointed)")
    }
    guard epochs >= 1 else { throw fail("epochs must be at least 1, got \(epochs)") }
    guard batchSize >= 1 else { throw fail("batch size must be at least 1, got \(batchSize)") }
    guard lr > 0, lr.isFinite else { throw fail("learning rate must be positive, got \(lr)") }
    guard rtol > 0, atol > 0 else { throw fail("tolerances must be positive") }
    guard rkSteps >= 1 else { throw fail("rk-steps must be at least 1") }
    guard width >= 1, residualBlocks >= 1, limit >= 0 else {
      throw fail("width and residual blocks must be positive, limit not negative")
    }
    guard ["sgd", "adam", "adamw"].contains(optimizer) else {
      throw fail("unknown optimizer '\(optimizer)' (sgd, adam, adamw)")
    }
    guard ["constant", "step", "cosine"].contains(schedule) else {
      throw fail("unknown schedule '\(schedule)' (constant, step, cosine)")
    }
    guard cropPadding >= 0, warmupSteps >= 0, weightDecay >= 0 else {
      throw fail("crop padding, warm-up and weight decay must not be negative")
    }
  }

  public var gradientMethod: GradientMethod? {
    switch gradient {
    case "direct": return .direct
    case "adjoint", "backsolve": return .backsolveAdjoint
    case "checkpointed": return .checkpointedAdjoint
    default: return nil
    }
  }

  /// The model-zoo configuration these settings describe, for a data set's shape.
  public func modelConfiguration(channels: Int, classes: Int) throws -> ModelZoo.Configuration {
    var c = ModelZoo.Configuration()
    c.inputChannels = channels
    c.classes = classes
    c.seed = seed
    c.ode = ODEOptions(solver: try ODESolver(parsing: solver), rtol: rtol, atol: atol)
    if !c.ode.solver.isAdaptive { c.ode.steps = rkSteps }
    c.gradient = gradientMethod ?? .backsolveAdjoint
    c.rkSteps = rkSteps
    c.width = width
    c.residualBlocks = residualBlocks
    return c
  }

  public func makeOptimizer() -> any Optimizer {
    switch optimizer {
    case "sgd":
      return SGD(learningRate: lr, momentum: momentum, nesterov: true, weightDecay: weightDecay)
    case "adam": return Adam(learningRate: lr, weightDecay: weightDecay)
    default: return Adam(learningRate: lr, weightDecay: weightDecay, decoupled: true)
    }
  }

  public func learningRateSchedule(totalSteps: Int) -> LearningRateSchedule {
    switch schedule {
    case "constant": return .constant
    case "step": return .step(every: max(1, totalSteps / 3), gamma: 0.1)
    default: return .cosine(totalSteps: totalSteps, minimum: lr * 0.01)
    }
  }

  /// The training and test sets (their first `limit` images when `limit` > 0).
  public func loadData() throws -> (train: ImageDataset, test: ImageDataset) {
    let (train, test) = try loadFullData()
    return (try Self.first(limit, of: train), try Self.first(limit, of: test))
  }

  static func first(_ n: Int, of d: ImageDataset) throws -> ImageDataset {
    guard n > 0, n < d.count else { return d }
    return try ImageDataset(
      name: d.name, images: Array(d.images[..<(n * d.imageSize)]), labels: Array(d.labels[..<n]),
      channels: d.channels, height: d.height, width: d.width, classes: d.classes)
  }

  private func loadFullData() throws -> (train: ImageDataset, test: ImageDataset) {
    let dir = URL(fileURLWithPath: data)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory),
      isDirectory.boolValue
    else {
      throw DatasetError.invalidArgument("data folder '\(data)' does not exist")
    }
    switch format {
    case "cifar10":
      return (
        try ImageDataset.cifar10(directory: dir, split: .train),
        try ImageDataset.cifar10(directory: dir, split: .test)
      )
    case "cifar100":
      return (
        try ImageDataset.cifar100(directory: dir, split: .train),
        try ImageDataset.cifar100(directory: dir, split: .test)
      )
    default:
      return (
        try ImageDataset.mnist(directory: dir, split: .train, name: format),
        try ImageDataset.mnist(directory: dir, split: .test, name: format)
      )
    }
  }

  /// Per-channel normalisation for the data set.
  public var normalization: Normalization {
    switch format {
    case "cifar10": return .cifar10
    case "cifar100": return .cifar100
    default: return .mnist
    }
  }
}
