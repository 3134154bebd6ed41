import DiffEqCore
import DiffEqData
import DiffEqModels
import DiffEqODE
import Foundation
import Kernels

/// A `LatentODE` trained as a variational autoencoder of irregularly sampled series. Each
/// series' first observations are observed and its last `extrapolatedFraction` of them (at
/// least one kept observed) are held back: the GRU encodes the observed ones, the decoder
/// reconstructs them and extrapolates to the held-back times.
///
/// Loss per series, the negative ELBO of torchdiffeq's example with one sample of z₀:
///   Σ_observed ‖x − x̂‖² / 2σ² + n·d·½ log 2πσ² + KL(q(z₀ | x) ‖ N(0, I))
/// (σ the fixed observation noise, n observations of d values), averaged over the batch; the
/// held-back points take no part in it. Metrics: `reconstructionMSE` (observed points) and
/// `extrapolationMSE` (held-back points), per value; on the test split with z₀ = μ, and the test
/// loss is the same ELBO at z₀ = μ.
///
/// A batch decodes on the union of its series' times (relative to each one's first
/// observation) and masks each series' own points, as Rubanova et al. do for irregular series.
/// Its ε is drawn from (seed, epoch, batch), so a resumed run draws the same.
public final class LatentODETask: TrainingTask {
  public struct Batch: Sendable {
    /// Indices of the training series.
    public var series: [Int]
    /// The seed of this batch's ε.
    public var noiseSeed: UInt64
  }

  public let latentODE: LatentODE
  public let backend: any Backend
  public let train: TimeSeriesDataset
  public let test: TimeSeriesDataset
  /// The noiseless test series (same ids), drawn in the plot when known.
  public let truth: TimeSeriesDataset?
  public let batchSize: Int
  public let seed: UInt64
  public let noise: Double
  public let extrapolatedFraction: Double

  public init(
    _ configuration: TrainingConfiguration, backend: any Backend, train: TimeSeriesDataset,
    test: TimeSeriesDataset, truth: TimeSeriesDataset? = nil
  ) throws {
    try configuration.validate()
    guard configuration.model == .latentODE else {
      throw DatasetError.invalidArgument("\(configuration.model) is not latent-ode")
    }
    guard train.dimension == test.dimension else {
      throw DatasetError.invalidArgument(
        "training series have \(train.dimension) values per row, test series \(test.dimension)")
    }
    self.backend = backend
    self.train = train
    self.test = test
    self.truth = truth
    batchSize = configuration.batchSize
    seed = configuration.seed
    let settings = configuration.latentSettings
    noise = settings.noise
    extrapolatedFraction = settings.extrapolated
    let c = configuration.modelConfiguration(channels: train.dimension, classes: 0)
    var rng = RandomState(seed: configuration.seed)
    latentODE = try LatentODE(
      dimension: train.dimension, latentDimension: settings.dimension, width: c.width,
      options: c.ode, gradient: c.gradient, dtype: c.dtype, rng: &rng, on: backend)
  }

  public var model: Module { latentODE }
  public var modelName: String { ModelArchitecture.latentODE.rawValue }
  public var batchesPerEpoch: Int { (train.series.count + batchSize - 1) / batchSize }
  public var samplesPerEpoch: Int { train.series.count }
  public var metrics: [TaskMetric] {
    [
      TaskMetric("reconstructionMSE", isFraction: false),
      TaskMetric("extrapolationMSE", isFraction: false),
    ]
  }
  public var functionEvaluations: FunctionEvaluations? { latentODE.lastStatistics.evaluations }

  /// How many of a series' `count` observations the encoder sees: all but the last
  /// round(count·fraction), at least one.
  func observedCount(_ count: Int) -> Int {
    max(1, count - Int((Double(count) * extrapolatedFraction).rounded()))
  }

  /// Epoch `epoch`'s batches: the series in an order drawn from (seed, epoch), cut into batches.
  func batches(epoch: Int) -> [Batch] {
    var rng = RandomState(seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(epoch + 1))
    var order = Array(train.series.indices)
    for i in stride(from: order.count - 1, to: 0, by: -1) {
      order.swapAt(i, Int(rng.next() % UInt64(i + 1)))
    }
    return stride(from: 0, to: order.count, by: batchSize).map { start in
      Batch(
        series: Array(order[start..<min(start + batchSize, order.count)]), noiseSeed: rng.next())
    }
  }

  public func trainingBatches(epoch: Int, from first: Int) -> AnyIterator<Batch> {
    AnyIterator(batches(epoch: epoch).dropFirst(first).makeIterator())
  }

  public func sampleCount(_ batch: Batch) -> Int { batch.series.count }

  /// A batch laid out on the union of its series' relative times.
  struct Layout {
    /// The union of the relative times, increasing from 0.
    var times: [Double]
    var steps: [LatentODE.EncoderStep]
    /// Observations at their grid time [T, batch, d], 0 elsewhere.
    var targets: Tensor
    /// [T, batch, 1]: 1 where a series has an observed (held-back) point.
    var observedMask: Tensor
    var heldBackMask: Tensor
    /// Observed and held-back values (points × d).
    var observedValues: Int
    var heldBackValues: Int
  }

  /// A relative time rounded to 1e-9: equal offsets of different series share a row.
  static func timeKey(_ t: Double) -> Double { (t * 1e9).rounded() / 1e9 }

  func layout(_ indices: [Int], in data: TimeSeriesDataset) throws -> Layout {
    let d = data.dimension
    let batch = indices.count
    let key = Self.timeKey
    var keys = Set<Double>()
    for s in indices {
      let t = data.series[s].times
      for v in t { keys.insert(key(v - t[0])) }
    }
    let times = keys.sorted()
    let row = Dictionary(uniqueKeysWithValues: times.enumerated().map { ($1, $0) })
    var targets = [Double](repeating: 0, count: times.count * batch * d)
    var observed = [Double](repeating: 0, count: times.count * batch)
    var heldBack = observed
    var inputs = [[Double]](
      repeating: [Double](repeating: 0, count: batch * (d + 1)), count: times.count)
    var observedValues = 0
    var heldBackValues = 0
    for (b, s) in indices.enumerated() {
      let series = data.series[s]
      let t = series.times
      let n = observedCount(t.count)
      for i in t.indices {
        let k = row[key(t[i] - t[0])]!
        for j in 0..<d { targets[(k * batch + b) * d + j] = series.values[i][j] }
        if i < n {
          observed[k * batch + b] = 1
          observedValues += d
          for j in 0..<d { inputs[k][b * (d + 1) + j] = series.values[i][j] }
          inputs[k][b * (d + 1) + d] = i + 1 < n ? t[i + 1] - t[i] : 0
        } else {
          heldBack[k * batch + b] = 1
          heldBackValues += d
        }
      }
    }
    var steps: [LatentODE.EncoderStep] = []
    for k in times.indices {
      let mask = Array(observed[(k * batch)..<((k + 1) * batch)])
      guard mask.contains(1) else { continue }
      steps.append(
        LatentODE.EncoderStep(
          input: try Tensor(inputs[k], shape: [batch, d + 1], on: backend),
          mask: mask.allSatisfy { $0 == 1 }
            ? nil : try Tensor(mask, shape: [batch, 1], on: backend)))
    }
    return Layout(
      times: times, steps: steps,
      targets: try Tensor(targets, shape: [times.count, batch, d], on: backend),
      observedMask: try Tensor(observed, shape: [times.count, batch, 1], on: backend),
      heldBackMask: try Tensor(heldBack, shape: [times.count, batch, 1], on: backend),
      observedValues: observedValues, heldBackValues: heldBackValues)
  }

  /// The batch's negative ELBO (mean over its series) with z₀ from `noise` (nil: z₀ = μ), the
  /// squared errors summed over its observed and its held-back values, and the decoded
  /// observations [T, batch, d].
  func evaluate(_ layout: Layout, noise epsilon: Tensor?) throws -> (
    loss: Tensor, observedError: Tensor, heldBackError: Tensor, decoded: Tensor
  ) {
    let (mean, logVariance) = try latentODE.encode(layout.steps)
    let z0 =
      try epsilon.map {
        try LatentODE.sample(mean: mean, logVariance: logVariance, noise: $0)
      } ?? mean
    let decoded = try latentODE.decode(z0, times: layout.times)
    let squared = try (decoded - layout.targets).square()
    let observedError = try (squared * layout.observedMask).sum()
    let heldBackError = try (squared * layout.heldBackMask).sum()
    let batch = Double(mean.shape[0])
    let constant =
      Double(layout.observedValues) * 0.5 * Foundation.log(2 * Double.pi * noise * noise) / batch
    let kl = try LatentODE.klToStandardNormal(mean: mean, logVariance: logVariance).mean()
    let loss = try observedError * (1 / (2 * noise * noise * batch)) + kl + constant
    return (loss, observedError, heldBackError, decoded)
  }

  public func loss(on batch: Batch) throws -> (
    loss: Tensor, metricSums: () throws -> [String: Double]
  ) {
    let layout = try layout(batch.series, in: train)
    var rng = RandomState(seed: batch.noiseSeed)
    let epsilon = try Tensor.normal(
      [batch.series.count, latentODE.latentDimension], rng: &rng, on: backend)
    let (loss, observedError, heldBackError, _) = try evaluate(layout, noise: epsilon)
    let count = Double(batch.series.count)
    return (
      loss,
      {
        let sums = try Self.read([observedError, heldBackError])
        return [
          "reconstructionMSE": sums[0] / Double(max(1, layout.observedValues)) * count,
          "extrapolationMSE": sums[1] / Double(max(1, layout.heldBackValues)) * count,
        ]
      }
    )
  }

  /// Scalars read in one transfer.
  static func read(_ scalars: [Tensor]) throws -> [Double] {
    try Tensor.concat(scalars.map { try $0.detached.reshaped([1]) }, axis: 0).toDoubles()
  }

  public func evaluate() throws -> (loss: Double, metrics: [String: Double]) {
    try evaluate(each: nil)
  }

  /// The test split's mean negative ELBO at z₀ = μ and its metrics; `each` sees every batch's
  /// series with its layout's times and decoded values [T, batch, d] on the host.
  func evaluate(each: ((_ series: [Int], _ times: [Double], _ decoded: [Double]) -> Void)?)
    throws -> (loss: Double, metrics: [String: Double])
  {
    latentODE.train(false)
    defer { latentODE.train(true) }
    var (loss, observed, heldBack) = (0.0, 0.0, 0.0)
    var (observedValues, heldBackValues) = (0, 0)
    for start in stride(from: 0, to: test.series.count, by: batchSize) {
      let indices = Array(start..<min(start + batchSize, test.series.count))
      let layout = try layout(indices, in: test)
      let result = try evaluate(layout, noise: nil)
      let sums = try Self.read([result.loss, result.observedError, result.heldBackError])
      loss += sums[0] * Double(indices.count)
      observed += sums[1]
      heldBack += sums[2]
      observedValues += layout.observedValues
      heldBackValues += layout.heldBackValues
      if let each { each(indices, layout.times, try result.decoded.toDoubles()) }
    }
    return (
      loss / Double(test.series.count),
      [
        "reconstructionMSE": observed / Double(max(1, observedValues)),
        "extrapolationMSE": heldBack / Double(max(1, heldBackValues)),
      ]
    )
  }
}

extension LatentODETask {
  /// CSV lines `series,time,part,true_v1..,predicted_v1..` for every test observation (`part`:
  /// observed or extrapolated; z₀ = μ), and the test split's evaluation.
  public func predictionTable() throws -> (
    csv: String, loss: Double, metrics: [String: Double]
  ) {
    let d = test.dimension
    let header =
      ["series", "time", "part"] + (1...d).map { "true_v\($0)" }
      + (1...d).map { "predicted_v\($0)" }
    var lines = [header.joined(separator: ",")]
    let test = test
    let (loss, metrics) = try evaluate { indices, times, decoded in
      let rows = Dictionary(uniqueKeysWithValues: times.enumerated().map { ($1, $0) })
      for (b, s) in indices.enumerated() {
        let series = test.series[s]
        let n = self.observedCount(series.times.count)
        for (i, t) in series.times.enumerated() {
          let k = rows[Self.timeKey(t - series.times[0])]!
          let start = (k * indices.count + b) * d
          let row =
            [series.id, "\(t)", i < n ? "observed" : "extrapolated"]
            + series.values[i].map { "\($0)" } + decoded[start..<(start + d)].map { "\($0)" }
          lines.append(row.joined(separator: ","))
        }
      }
    }
    return (lines.joined(separator: "\n") + "\n", loss, metrics)
  }
}

extension Trainer where Task == LatentODETask {
  /// A trainer of a latent ODE on `train`, tested on `test` (`truth`: the noiseless test
  /// series, for the plot; a required label, which tells this trainer from a forecaster's).
  public convenience init(
    _ configuration: TrainingConfiguration, backend: any Backend, train: TimeSeriesDataset,
    test: TimeSeriesDataset, truth: TimeSeriesDataset?
  ) throws {
    try self.init(
      LatentODETask(
        configuration, backend: backend, train: train, test: test, truth: truth),
      configuration: configuration, backend: backend)
  }
}
