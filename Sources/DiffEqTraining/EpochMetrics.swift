import DiffEqCore
import DiffEqData
import DiffEqModels
import DiffEqODE
import Kernels

/// One line of `metrics.jsonl`: what an epoch did.
public struct EpochMetrics: Codable, Sendable, Equatable {
  public var epoch: Int
  public var trainLoss: Double
  public var trainAccuracy: Double
  public var testLoss: Double
  public var testAccuracy: Double
  /// Mean function evaluations per batch of the ODE block (0 for models without one).
  public var nfeForward: Double
  public var nfeBackward: Double
  public var seconds: Double
  public var imagesPerSecond: Double
  public var learningRate: Double
  /// Peak bytes held by the backend's pool during the epoch.
  public var peakBytes: Int
}

/// What the trainer reports after each batch, for progress displays.
public struct BatchProgress: Sendable {
  public var epoch: Int
  public var epochs: Int
  public var batch: Int
  public var batches: Int
  public var loss: Double
  public var accuracy: Double
  public var nfeForward: Int
  public var nfeBackward: Int
  public var imagesPerSecond: Double
  /// Seconds left in the run at the current pace.
  public var remainingSeconds: Double
}
