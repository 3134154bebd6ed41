import DiffEqCore
import DiffEqData
import DiffEqModels
import DiffEqODE
import Foundation
import Kernels

/// Trains an `ImageClassifier` with softmax cross-entropy, evaluates it, and checkpoints it so
/// that a stopped run resumes exactly where it stopped.
///
/// Position bookkeeping: `epoch` counts completed epochs and `batch` the batches done in the
/// current one; both go into checkpoints with the optimiser's state. Every random choice of the
/// data pipeline is a function of (seed, epoch, batch), so a resumed run on the CPU backend
/// repeats bit for bit what an uninterrupted one computes.
public final class Trainer {
  public let configuration: TrainingConfiguration
  public let backend: any Backend
  public let model: ImageClassifier
  public let optimizer: any Optimizer
  public let trainLoader: BatchLoader
  public let testLoader: BatchLoader
  public private(set) var epoch = 0
  public private(set) var batch = 0
  /// Set from another thread (a signal handler) to stop after the current step.
  public let stopRequested = StopFlag()
  private let schedule: LearningRateSchedule

  public init(
    _ configuration: TrainingConfiguration, backend: any Backend, train: ImageDataset,
    test: ImageDataset
  )
    throws
  {
    try configuration.validate()
    self.configuration = configuration
    self.backend = backend
    let c = try configuration.modelConfiguration(channels: train.channels, classes: train.classes)
    model = try ModelZoo.make(configuration.model, c, on: backend)
    optimizer = configuration.makeOptimizer()
    let cifar = configuration.format.hasPrefix("cifar")
    trainLoader = try BatchLoader(
      train, batchSize: configuration.batchSize, normalization: configuration.normalization,
      augmentation: Augmentation(cropPadding: configuration.cropPadding, horizontalFlip: cifar),
      shuffle: true, dropLast: false, seed: configuration.seed)
    testLoader = try BatchLoader(
      test, batchSize: max(configuration.batchSize, 128),
      normalization: configuration.normalization,
      shuffle: false, seed: configuration.seed)
    schedule = configuration.learningRateSchedule(
      totalSteps: configuration.epochs * trainLoader.batchesPerEpoch)
  }

  /// Whether every epoch has been run.
  public var isFinished: Bool { epoch >= configuration.epochs }

  /// Trains the rest of the current epoch (from `batch`), reporting each step. Returns the
  /// epoch's metrics, or nil if a stop was requested before its end (the position is kept).
  public func trainEpoch(_ report: (BatchProgress) -> Void) throws -> EpochMetrics? {
    model.train(true)
    let start = Date()
    backend.pool.resetPeak()
    var lossSum = 0.0
    var correct = 0
    var seen = 0
    var nfeForward = 0
    var nfeBackward = 0
    let batches = trainLoader.batchesPerEpoch
    for b in Prefetcher(trainLoader, epoch: epoch, startingAt: batch) {
      let step = epoch * batches + batch
      optimizer.learningRate = schedule.rate(
        base: configuration.lr, step: step, warmup: configuration.warmupSteps)
      let (images, labels) = try b.tensors(on: backend)
      var logits: Tensor?
      let (loss, grads) = try valueAndGrad(model) {
        let out = try model(images)
        logits = out.detached
        return try out.softmaxCrossEntropy(labels: labels)
      }
      try optimizer.update(model, gradients: grads)
      let lossValue = try loss.item()
      guard lossValue.isFinite else {
        throw TensorError.invalidArgument(
          op: "training",
          reason: "the loss became \(lossValue) at epoch \(epoch + 1), batch \(batch + 1)")
      }
      lossSum += lossValue * Double(b.count)
      correct += try Self.correctCount(logits!, b.labels)
      seen += b.count
      if let s = model.odeStatistics {
        nfeForward += s.forwardEvaluations
        nfeBackward += s.backwardEvaluations
      }
      batch += 1
      let elapsed = Date().timeIntervalSince(start)
      let rate = Double(seen) / max(elapsed, 1e-9)
      let remainingImages =
        Double(batches - batch) * Double(configuration.batchSize)
        + Double(configuration.epochs - epoch - 1) * Double(trainLoader.dataset.count)
      report(
        BatchProgress(
          epoch: epoch + 1, epochs: configuration.epochs, batch: batch, batches: batches,
          loss: lossSum / Double(seen), accuracy: Double(correct) / Double(seen),
          nfeForward: model.odeStatistics?.forwardEvaluations ?? 0,
          nfeBackward: model.odeStatistics?.backwardEvaluations ?? 0, imagesPerSecond: rate,
          remainingSeconds: remainingImages / max(rate, 1e-9)))
      if stopRequested.isSet && batch < batches { return nil }
    }
    let seconds = Date().timeIntervalSince(start)
    let peak = backend.pool.peakBytes
    let (testLoss, testAccuracy) = try evaluate(testLoader)
    let steps = Double(max(1, batch))
    let metrics = EpochMetrics(
      epoch: epoch + 1, trainLoss: lossSum / Double(max(1, seen)),
      trainAccuracy: Double(correct) / Double(max(1, seen)), testLoss: testLoss,
      testAccuracy: testAccuracy, nfeForward: Double(nfeForward) / steps,
      nfeBackward: Double(nfeBackward) / steps, seconds: seconds,
      imagesPerSecond: Double(seen) / max(seconds, 1e-9), learningRate: optimizer.learningRate,
      peakBytes: peak)
    epoch += 1
    batch = 0
    return metrics
  }

  /// Mean loss and accuracy of the model on every batch of `loader`, in evaluation mode.
  public func evaluate(_ loader: BatchLoader, predictions: ((Batch, [Int]) -> Void)? = nil) throws
    -> (loss: Double, accuracy: Double)
  {
    model.train(false)
    defer { model.train(true) }
    var lossSum = 0.0
    var correct = 0
    var seen = 0
    for b in Prefetcher(loader, epoch: 0) {
      let (images, labels) = try b.tensors(on: backend)
      let logits = try model(images)
      lossSum += try logits.softmaxCrossEntropy(labels: labels).item() * Double(b.count)
      let predicted = try Self.argmax(logits)
      correct += zip(predicted, b.labels).filter { Float($0) == $1 }.count
      predictions?(b, predicted)
      seen += b.count
    }
    return (lossSum / Double(max(1, seen)), Double(correct) / Double(max(1, seen)))
  }

  static func argmax(_ logits: Tensor) throws -> [Int] {
    let v = try logits.toFloats()
    let k = logits.shape[1]
    return (0..<logits.shape[0]).map { r in
      var best = 0
      for j in 1..<k where v[r * k + j] > v[r * k + best] { best = j }
      return best
    }
  }

  static func correctCount(_ logits: Tensor, _ labels: [Float]) throws -> Int {
    zip(try argmax(logits), labels).filter { Float($0) == $1 }.count
  }

  // MARK: Checkpoints

  /// Writes the model, optimiser state and position to `url` atomically.
  public func saveCheckpoint(to url: URL) throws {
    try Checkpoint.save(
      model: model, optimizer: optimizer,
      metadata: [
        "model": configuration.model, "config": try Checkpoint.json(configuration),
        "epoch": String(epoch), "batch": String(batch), "format": "diffeqnet-checkpoint-1",
      ], to: url)
  }

  /// Restores a checkpoint written by `saveCheckpoint`, rejecting one written for another model.
  public func loadCheckpoint(from url: URL) throws {
    let file = url.lastPathComponent
    let metadata = try Checkpoint.load(from: url, into: model, optimizer: optimizer)
    guard metadata["format"] == "diffeqnet-checkpoint-1" else {
      throw CheckpointError.invalidMetadata(
        file: file, key: "format", reason: "not a DiffEqNet training checkpoint")
    }
    guard metadata["model"] == configuration.model else {
      throw CheckpointError.invalidMetadata(
        file: file, key: "model",
        reason: "written for '\(metadata["model"] ?? "?")', not '\(configuration.model)'")
    }
    guard let e = metadata["epoch"].flatMap(Int.init), let b = metadata["batch"].flatMap(Int.init),
      e >= 0, b >= 0
    else {
      throw CheckpointError.invalidMetadata(
        file: file, key: "epoch", reason: "missing or not a number")
    }
    epoch = e
    batch = b
  }
}

/// A flag set from a signal handler or another thread and read by the training loop.
public final class StopFlag: @unchecked Sendable {
  // `@unchecked`: the one mutable field is only touched under `lock`.
  private let lock = NSLock()
  private var value = false
  public init() {}
  public var isSet: Bool { lock.withLock { value } }
  public func set() { lock.withLock { value = true } }
}
