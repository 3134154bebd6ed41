import DiffEqCore
import DiffEqData
import Foundation
import Kernels

/// Trains any `TrainingTask` by gradient descent, evaluates it after each epoch, and checkpoints
/// it so that a stopped run resumes exactly where it stopped.
///
/// Position bookkeeping: `epoch` counts completed epochs and `batch` the batches done in the
/// current one; both go into checkpoints with the optimiser's state. A task's batches are a
/// function of (seed, epoch, batch), so a resumed run on the CPU backend repeats bit for bit what
/// an uninterrupted one computes.
public final class Trainer<Task: TrainingTask> {
  public let configuration: TrainingConfiguration
  public let backend: any Backend
  public let task: Task
  public let optimizer: any Optimizer
  public private(set) var epoch = 0
  public private(set) var batch = 0
  /// Set from another thread (a signal handler) to stop after the current step.
  public let stopRequested = StopFlag()
  private let schedule: LearningRateSchedule

  /// A trainer for `task` with the optimiser, schedule and length `configuration` gives.
  public init(_ task: Task, configuration: TrainingConfiguration, backend: any Backend) throws {
    try configuration.validate()
    self.configuration = configuration
    self.backend = backend
    self.task = task
    optimizer = configuration.makeOptimizer()
    let (totalSteps, overflow) = configuration.epochs.multipliedReportingOverflow(
      by: task.batchesPerEpoch)
    guard !overflow else {
      throw TensorError.invalidArgument(
        op: "configuration",
        reason: "\(configuration.epochs) epochs of \(task.batchesPerEpoch) batches are too many")
    }
    schedule = configuration.learningRateSchedule(totalSteps: totalSteps)
  }

  /// The module being trained.
  public var model: Module { task.model }

  /// Whether every epoch has been run.
  public var isFinished: Bool { epoch >= configuration.epochs }

  /// Trains the rest of the current epoch (from `batch`), reporting each step. Returns the
  /// epoch's metrics, or nil if a stop was requested before its end (the position is kept).
  ///
  /// A batch whose loss or gradients are not finite changes nothing: it stops the run with an
  /// error naming the epoch and batch, or, with `onNonFinite: .skip`, is counted and passed over.
  /// `report` runs after each batch at a consistent position (a checkpoint saved there resumes
  /// exactly).
  public func trainEpoch(_ report: (BatchProgress) throws -> Void) throws -> EpochMetrics? {
    model.train(true)
    let start = Date()
    backend.pool.resetPeak()
    var lossSum = 0.0
    var metricSums: [String: Double] = [:]
    var seen = 0
    var nfeForward = 0
    var nfeBackward = 0
    var steps = 0
    var skipped = 0
    let batches = task.batchesPerEpoch
    for b in task.trainingBatches(epoch: epoch, from: batch) {
      optimizer.learningRate = schedule.rate(
        base: configuration.lr, step: epoch * batches + batch, warmup: configuration.warmupSteps)
      var sums: (() throws -> [String: Double])?
      let (loss, grads): (Tensor, [String: Tensor])
      do {
        (loss, grads) = try valueAndGrad(model) {
          let (loss, metrics) = try task.loss(on: b)
          sums = metrics
          return loss
        }
      } catch {
        throw TrainingStepError(epoch: epoch + 1, batch: batch + 1, underlying: error)
      }
      let (lossValue, problem) = try Self.inspect(loss: loss, gradients: grads)
      if let problem {
        guard configuration.onNonFinite == .skip else {
          throw TensorError.invalidArgument(
            op: "training",
            reason: "\(problem) at epoch \(epoch + 1), batch \(batch + 1) (--on-nan skip passes "
              + "over such batches)")
        }
        skipped += 1
        batch += 1
        if stopRequested.isSet && batch < batches { return nil }
        continue
      }
      try optimizer.update(model, gradients: grads)
      let count = task.sampleCount(b)
      lossSum += lossValue * Double(count)
      for (name, value) in try sums?() ?? [:] { metricSums[name, default: 0] += value }
      seen += count
      steps += 1
      let evaluations = task.functionEvaluations
      nfeForward += evaluations?.forward ?? 0
      nfeBackward += evaluations?.backward ?? 0
      batch += 1
      let elapsed = Date().timeIntervalSince(start)
      let rate = Double(seen) / max(elapsed, 1e-9)
      let remainingSamples =
        Double(task.samplesPerEpoch) * Double(batches - batch) / Double(max(1, batches))
        + Double(configuration.epochs - epoch - 1) * Double(task.samplesPerEpoch)
      try report(
        BatchProgress(
          epoch: epoch + 1, epochs: configuration.epochs, batch: batch, batches: batches,
          loss: lossSum / Double(seen), metrics: metricSums.mapValues { $0 / Double(seen) },
          nfeForward: evaluations?.forward ?? 0, nfeBackward: evaluations?.backward ?? 0,
          samplesPerSecond: rate,
          remainingSeconds: remainingSamples / max(rate, 1e-9)))
      if stopRequested.isSet && batch < batches { return nil }
    }
    let seconds = Date().timeIntervalSince(start)
    let peak = backend.pool.peakBytes
    let (testLoss, testMetrics) = try task.evaluate()
    var metrics: [String: Double] = [:]
    for m in task.metrics {
      metrics[EpochMetrics.key("train", m.name)] = (metricSums[m.name] ?? 0) / Double(max(1, seen))
      if let v = testMetrics[m.name] { metrics[EpochMetrics.key("test", m.name)] = v }
    }
    metrics.merge(try task.modelMetrics()) { current, _ in current }
    let perStep = Double(max(1, steps))
    let result = EpochMetrics(
      epoch: epoch + 1, trainLoss: lossSum / Double(max(1, seen)), testLoss: testLoss,
      metrics: metrics, nfeForward: Double(nfeForward) / perStep,
      nfeBackward: Double(nfeBackward) / perStep, seconds: seconds,
      samplesPerSecond: Double(seen) / max(seconds, 1e-9), learningRate: optimizer.learningRate,
      peakBytes: peak, skippedBatches: skipped)
    epoch += 1
    batch = 0
    return result
  }

  /// The step's loss, and what is not finite about the step (nil when all is). The gradients
  /// are checked through their sum of squares, reduced on the device and read with the loss in
  /// one transfer: an overflow to infinity counts as exploded.
  static func inspect(loss: Tensor, gradients: [String: Tensor]) throws -> (
    loss: Double, problem: String?
  ) {
    var values = [try loss.reshaped([1])]
    for (_, g) in gradients.sorted(by: { $0.key < $1.key }) {
      values.append(try (g * g).sum().reshaped([1]))
    }
    let read = try Tensor.concat(values, axis: 0).toDoubles()
    guard read[0].isFinite else { return (read[0], "the loss became \(read[0])") }
    let norm = read.dropFirst().reduce(0, +)
    return (read[0], norm.isFinite ? nil : "the gradient's squared norm became \(norm)")
  }

  // MARK: Checkpoints

  /// Writes the model, the optimiser's state and the position to `url` atomically, in the
  /// current `CheckpointFormat`.
  public func saveCheckpoint(to url: URL) throws {
    try Checkpoint.save(
      model: model, optimizer: optimizer,
      metadata: [
        CheckpointFormat.key: CheckpointFormat.current.name, "model": task.modelName,
        "config": try Checkpoint.json(configuration), "epoch": String(epoch),
        "batch": String(batch),
      ], to: url)
  }

  /// Restores a checkpoint written by `saveCheckpoint` (or by an earlier format, converted), and
  /// rejects one of another model or format before anything is changed: a rejected checkpoint
  /// leaves the model, the optimiser and the position as they were.
  public func loadCheckpoint(from url: URL) throws {
    let name = url.lastPathComponent
    var contents = try SafeTensorsFile.read(from: url)
    let format = try CheckpointFormat(of: contents.metadata, file: name)
    guard contents.metadata["model"] == task.modelName else {
      throw CheckpointError.invalidMetadata(
        file: name, key: "model",
        reason: "written for '\(contents.metadata["model"] ?? "?")', not '\(task.modelName)'")
    }
    guard let e = contents.metadata["epoch"].flatMap(Int.init),
      let b = contents.metadata["batch"].flatMap(Int.init), e >= 0, b >= 0
    else {
      throw CheckpointError.invalidMetadata(
        file: name, key: "epoch", reason: "missing or not a number")
    }
    try format.upgrade(&contents, for: model, file: name)
    try Checkpoint.load(contents, file: name, into: model, optimizer: optimizer)
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

/// A training step failed (a solve reached its cap with convergence required, a NaN inside a
/// solver, …): where, and why.
public struct TrainingStepError: Error, CustomStringConvertible {
  /// One-based, as progress lines count.
  public var epoch: Int
  public var batch: Int
  public var underlying: any Error

  public var description: String { "epoch \(epoch), batch \(batch): \(underlying)" }
}
