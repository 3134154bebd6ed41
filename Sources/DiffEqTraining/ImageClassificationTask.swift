import DiffEqCore
import DiffEqData
import DiffEqModels
import DiffEqODE
import Foundation
import Kernels

/// Image classification with softmax cross-entropy: a model-zoo classifier on an image data
/// set, reporting accuracy.
public final class ImageClassificationTask: TrainingTask {
  public let classifier: ImageClassifier
  public let backend: any Backend
  public let trainLoader: BatchLoader
  public let testLoader: BatchLoader

  /// The classifier `configuration` names, for `train`'s shape, with its loaders.
  public init(
    _ configuration: TrainingConfiguration, backend: any Backend, train: ImageDataset,
    test: ImageDataset
  ) throws {
    try configuration.validate()
    self.backend = backend
    let c = configuration.modelConfiguration(channels: train.channels, classes: train.classes)
    classifier = try ModelZoo.make(configuration.model, c, on: backend)
    let normalization = configuration.inputNormalization
    trainLoader = try BatchLoader(
      train, batchSize: configuration.batchSize, normalization: normalization,
      augmentation: Augmentation(
        cropPadding: configuration.cropPadding, horizontalFlip: configuration.format.isCIFAR),
      shuffle: true, dropLast: false, seed: configuration.seed)
    testLoader = try BatchLoader(
      test, batchSize: max(configuration.batchSize, 128), normalization: normalization,
      shuffle: false, seed: configuration.seed)
  }

  public var model: Module { classifier }
  public var modelName: String { classifier.architecture.rawValue }
  public var batchesPerEpoch: Int { trainLoader.batchesPerEpoch }
  public var samplesPerEpoch: Int { trainLoader.dataset.count }
  /// Accuracy, and for a DEQ the outcome of its solves on the training batches: the final
  /// relative residual of the forward solve and, with implicit gradients, of the backward one
  /// (means over samples), and the share of samples in batches where either stopped at its cap
  /// unconverged (`unconverged`).
  public var metrics: [TaskMetric] {
    var all = [TaskMetric("accuracy", isFraction: true)]
    if let block = classifier.equilibriumBlock {
      all.append(TaskMetric("forwardResidual", isFraction: false))
      if case .implicit = block.gradient {
        all.append(TaskMetric("backwardResidual", isFraction: false))
      }
      all.append(TaskMetric("unconverged", isFraction: true))
    }
    return all
  }
  public var functionEvaluations: FunctionEvaluations? { classifier.functionEvaluations }

  public func trainingBatches(epoch: Int, from first: Int) -> AnyIterator<Batch> {
    AnyIterator(Prefetcher(trainLoader, epoch: epoch, startingAt: first).makeIterator())
  }

  public func sampleCount(_ batch: Batch) -> Int { batch.count }

  public func loss(on batch: Batch) throws -> (
    loss: Tensor, metricSums: () throws -> [String: Double]
  ) {
    let (images, labels) = try batch.tensors(on: backend)
    // Stochastic depth draws from the position, so a resumed run drops the same blocks.
    classifier.network?.step = UInt64(batch.epoch * batchesPerEpoch + batch.index)
    let logits = try classifier(images)
    var loss = try logits.softmaxCrossEntropy(labels: labels)
    if let extra = classifier.auxiliaryLoss { loss = try loss + extra }
    let detached = logits.detached
    let block = classifier.equilibriumBlock
    return (
      loss,
      {
        var sums = ["accuracy": Double(try Self.correctCount(detached, batch.labels))]
        if let block { sums.merge(Self.solveSums(block, samples: batch.count)) { $1 } }
        return sums
      }
    )
  }

  public func evaluate() throws -> (loss: Double, metrics: [String: Double]) {
    let (loss, accuracy) = try evaluate(testLoader)
    return (loss, ["accuracy": accuracy])
  }

  /// Mean loss and accuracy of the model on every batch of `loader`, in evaluation mode;
  /// `predictions` sees each batch with its predicted classes.
  public func evaluate(_ loader: BatchLoader, predictions: ((Batch, [Int]) -> Void)? = nil)
    throws -> (loss: Double, accuracy: Double)
  {
    classifier.train(false)
    defer { classifier.train(true) }
    var lossSum = 0.0
    var correct = 0
    var seen = 0
    for b in Prefetcher(loader, epoch: 0) {
      let (images, labels) = try b.tensors(on: backend)
      let logits = try classifier(images)
      lossSum += try logits.softmaxCrossEntropy(labels: labels).item() * Double(b.count)
      let predicted = try Self.argmax(logits)
      correct += zip(predicted, b.labels).filter { Float($0) == $1 }.count
      predictions?(b, predicted)
      seen += b.count
    }
    return (lossSum / Double(max(1, seen)), Double(correct) / Double(max(1, seen)))
  }

  /// An LM-ResNet's coefficients k_n in block order, as `k1`, `k2`, …
  public func modelMetrics() throws -> [String: Double] {
    let ks = try classifier.network?.lmCoefficients() ?? []
    return Dictionary(
      uniqueKeysWithValues: ks.enumerated().map { ("k\($0.offset + 1)", $0.element) })
  }

  /// A DEQ block's last solves as sums over `samples` samples (read after backpropagation).
  static func solveSums(_ block: DEQBlock, samples: Int) -> [String: Double] {
    let s = block.lastStatistics
    let n = Double(samples)
    let implicit = s.backwardIterations > 0
    // A steady-state search that never reached an accepted step has no residual; it counts
    // as unconverged.
    var sums = [
      "forwardResidual": s.forwardResidual.isFinite ? s.forwardResidual * n : 0,
      "unconverged": !s.forwardConverged || (implicit && !s.backwardConverged) ? n : 0,
    ]
    if implicit { sums["backwardResidual"] = s.backwardResidual * n }
    return sums
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
}

extension Trainer where Task == ImageClassificationTask {
  /// A trainer of the image classifier `configuration` names, on `train`, tested on `test`.
  public convenience init(
    _ configuration: TrainingConfiguration, backend: any Backend, train: ImageDataset,
    test: ImageDataset
  ) throws {
    try self.init(
      ImageClassificationTask(configuration, backend: backend, train: train, test: test),
      configuration: configuration, backend: backend)
  }
}
