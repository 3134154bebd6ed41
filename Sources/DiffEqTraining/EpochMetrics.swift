/// One line of `metrics.jsonl`: what an epoch did. The task's own metrics (`metrics`) are written
/// beside the common fields as keys of the same object: `{"epoch": 1, "trainLoss": …,
/// "testAccuracy": …}`.
public struct EpochMetrics: Sendable, Equatable {
  public var epoch: Int
  public var trainLoss: Double
  public var testLoss: Double
  /// The task's metrics by name, `train` or `test` + the metric's name: `testAccuracy`.
  public var metrics: [String: Double]
  /// Mean function evaluations per batch of the model's solver (0 for models without one).
  public var nfeForward: Double
  public var nfeBackward: Double
  public var seconds: Double
  public var samplesPerSecond: Double
  public var learningRate: Double
  /// Peak bytes held by the backend's pool during the epoch.
  public var peakBytes: Int
  /// Batches left out because their loss or gradients were not finite (`onNonFinite: .skip`).
  public var skippedBatches: Int

  public init(
    epoch: Int, trainLoss: Double, testLoss: Double, metrics: [String: Double],
    nfeForward: Double, nfeBackward: Double, seconds: Double, samplesPerSecond: Double,
    learningRate: Double, peakBytes: Int, skippedBatches: Int = 0
  ) {
    self.epoch = epoch
    self.trainLoss = trainLoss
    self.testLoss = testLoss
    self.metrics = metrics
    self.nfeForward = nfeForward
    self.nfeBackward = nfeBackward
    self.seconds = seconds
    self.samplesPerSecond = samplesPerSecond
    self.learningRate = learningRate
    self.peakBytes = peakBytes
    self.skippedBatches = skippedBatches
  }

  /// The metric `name` measured on the test split (`test` + `name`, capitalised).
  public func test(_ name: String) -> Double? { metrics[Self.key("test", name)] }
  /// The metric `name` measured on the training batches.
  public func train(_ name: String) -> Double? { metrics[Self.key("train", name)] }

  static func key(_ split: String, _ name: String) -> String {
    split + name.prefix(1).uppercased() + name.dropFirst()
  }
}

extension EpochMetrics: Codable {
  private struct Key: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  private static let common: Set<String> = [
    "epoch", "trainLoss", "testLoss", "nfeForward", "nfeBackward", "seconds", "samplesPerSecond",
    "learningRate", "peakBytes", "skippedBatches",
  ]

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: Key.self)
    epoch = try c.decode(Int.self, forKey: Key("epoch"))
    trainLoss = try c.decode(Double.self, forKey: Key("trainLoss"))
    testLoss = try c.decode(Double.self, forKey: Key("testLoss"))
    nfeForward = try c.decode(Double.self, forKey: Key("nfeForward"))
    nfeBackward = try c.decode(Double.self, forKey: Key("nfeBackward"))
    seconds = try c.decode(Double.self, forKey: Key("seconds"))
    // Runs before the Trainer served every task counted images.
    samplesPerSecond =
      try c.decodeIfPresent(Double.self, forKey: Key("samplesPerSecond"))
      ?? c.decode(Double.self, forKey: Key("imagesPerSecond"))
    learningRate = try c.decode(Double.self, forKey: Key("learningRate"))
    peakBytes = try c.decode(Int.self, forKey: Key("peakBytes"))
    skippedBatches = try c.decodeIfPresent(Int.self, forKey: Key("skippedBatches")) ?? 0
    metrics = [:]
    for key in c.allKeys
    where !Self.common.contains(key.stringValue) && key.stringValue != "imagesPerSecond" {
      metrics[key.stringValue] = try c.decode(Double.self, forKey: key)
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: Key.self)
    try c.encode(epoch, forKey: Key("epoch"))
    try c.encode(trainLoss, forKey: Key("trainLoss"))
    try c.encode(testLoss, forKey: Key("testLoss"))
    try c.encode(nfeForward, forKey: Key("nfeForward"))
    try c.encode(nfeBackward, forKey: Key("nfeBackward"))
    try c.encode(seconds, forKey: Key("seconds"))
    try c.encode(samplesPerSecond, forKey: Key("samplesPerSecond"))
    try c.encode(learningRate, forKey: Key("learningRate"))
    try c.encode(peakBytes, forKey: Key("peakBytes"))
    try c.encode(skippedBatches, forKey: Key("skippedBatches"))
    for (name, value) in metrics where !Self.common.contains(name) {
      try c.encode(value, forKey: Key(name))
    }
  }
}

/// What the trainer reports after each batch, for progress displays.
public struct BatchProgress: Sendable {
  public var epoch: Int
  public var epochs: Int
  public var batch: Int
  public var batches: Int
  /// The running mean of the loss over the epoch's batches so far.
  public var loss: Double
  /// The running mean of each of the task's metrics, by the metric's name.
  public var metrics: [String: Double]
  public var nfeForward: Int
  public var nfeBackward: Int
  public var samplesPerSecond: Double
  /// Seconds left in the run at the current pace.
  public var remainingSeconds: Double
}
