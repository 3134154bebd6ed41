import DiffEqCore
import DiffEqODE
import Foundation

/// A number a task reports per epoch besides its loss, e.g. classification accuracy.
public struct TaskMetric: Sendable, Equatable {
  /// Its name in progress lines and, prefixed by `train`/`test` (`testAccuracy`), in
  /// `metrics.jsonl`.
  public var name: String
  /// A fraction in [0, 1], shown as a percentage.
  public var isFraction: Bool

  public init(_ name: String, isFraction: Bool) {
    self.name = name
    self.isFraction = isFraction
  }
}

/// What a `Trainer` trains: a model, its data, its loss and what it reports. The Trainer owns
/// everything a task shares with every other (the optimiser and its schedule, the position,
/// checkpoints and their resume, stop requests, progress, metrics); a task owns only what makes
/// it a different problem. `ImageClassificationTask` is the first.
///
/// Exact resume requires that batch `i` of epoch `e` is a function of (seed, e, i) alone.
public protocol TrainingTask: AnyObject {
  associatedtype Batch

  /// The module whose trainable parameters are optimised and whose parameters checkpoints hold.
  var model: Module { get }
  /// Names the model in checkpoints: a checkpoint loads only into a task of the same name.
  var modelName: String { get }
  var batchesPerEpoch: Int { get }
  /// Training samples per epoch, for the throughput and the time left.
  var samplesPerEpoch: Int { get }
  /// What `loss(on:)` and `evaluate()` report besides the loss.
  var metrics: [TaskMetric] { get }
  /// The function evaluations of the model's solver in the most recent step (nil for a model
  /// without one).
  var functionEvaluations: FunctionEvaluations? { get }

  /// The training batches of `epoch`, from batch `first` to the end of the epoch.
  func trainingBatches(epoch: Int, from first: Int) -> AnyIterator<Batch>
  /// The number of samples in `batch`.
  func sampleCount(_ batch: Batch) -> Int
  /// The mean loss over `batch`, recorded so that the Trainer can differentiate it, and a
  /// closure, called after the optimiser's update, that sums each of `metrics` over the batch's
  /// samples (it may read the device: it runs after the step's work is queued).
  func loss(on batch: Batch) throws -> (loss: Tensor, metricSums: () throws -> [String: Double])
  /// The mean loss and each of `metrics` on the test split, in evaluation mode.
  func evaluate() throws -> (loss: Double, metrics: [String: Double])
  /// Values of the model itself that each epoch's metrics record under their own names after
  /// evaluation (an LM-ResNet's k_n); read once per epoch.
  func modelMetrics() throws -> [String: Double]
  /// The one hook for a task's own outputs (plots, tables), called after each epoch with the run
  /// folder and the history so far. Writes must be atomic.
  func writeArtifacts(to folder: URL, history: [EpochMetrics]) throws
}

extension TrainingTask {
  public var functionEvaluations: FunctionEvaluations? { nil }
  public func modelMetrics() throws -> [String: Double] { [:] }
  public func writeArtifacts(to folder: URL, history: [EpochMetrics]) throws {}
}
