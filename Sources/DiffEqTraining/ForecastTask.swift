import DiffEqCore
import DiffEqData
import DiffEqModels
import DiffEqODE
import Foundation
import Kernels

/// Forecasting time series: given the observations of a series up to a time t_i, the next
/// `horizon` of them, by a `SeriesForecaster` (node-series or ddnn-series) integrated from x(t_i)
/// to their times; the loss is their mean squared error (the test loss is the test MSE).
///
/// Every window (series, i) with `horizon` observations after i, and for the delay model with τ
/// of observed past before t_i, is a sample. Windows whose observation times have the same
/// offsets from t_i share batches (regular series: all of them).
public final class ForecastTask: TrainingTask {
  public typealias Batch = [Window]

  /// A sample: the series and the index of its last given observation.
  public struct Window: Sendable {
    public var series: Int
    public var index: Int
  }

  public let forecaster: SeriesForecaster
  public let architecture: ModelArchitecture
  public let backend: any Backend
  public let train: TimeSeriesDataset
  public let test: TimeSeriesDataset
  public let horizon: Int
  public let batchSize: Int
  public let seed: UInt64
  let trainGroups: [[Window]]
  let testGroups: [[Window]]

  public init(
    _ configuration: TrainingConfiguration, backend: any Backend, train: TimeSeriesDataset,
    test: TimeSeriesDataset
  ) throws {
    try configuration.validate()
    guard configuration.model.isSeries else {
      throw DatasetError.invalidArgument(
        "\(configuration.model) classifies images; series need node-series or ddnn-series")
    }
    guard train.dimension == test.dimension else {
      throw DatasetError.invalidArgument(
        "training series have \(train.dimension) values per row, test series \(test.dimension)")
    }
    self.backend = backend
    self.train = train
    self.test = test
    architecture = configuration.model
    horizon = configuration.forecastHorizon
    batchSize = configuration.batchSize
    seed = configuration.seed
    let c = configuration.modelConfiguration(channels: train.dimension, classes: 0)
    forecaster = try ModelZoo.makeForecaster(
      configuration.model, c, dimension: train.dimension, on: backend)
    let context = forecaster.delay ?? 0
    trainGroups = Self.groups(train, horizon: horizon, context: context)
    testGroups = Self.groups(test, horizon: horizon, context: context)
    guard !trainGroups.isEmpty, !testGroups.isEmpty else {
      throw DatasetError.invalidArgument(
        "no series is long enough for a horizon of \(horizon) after \(context) time units of past"
      )
    }
  }

  /// The windows of `data`, grouped by the offsets of their forecast times.
  static func groups(_ data: TimeSeriesDataset, horizon: Int, context: Double) -> [[Window]] {
    var byOffsets: [[Double]: [Window]] = [:]
    var order: [[Double]] = []
    for (s, series) in data.series.enumerated() {
      let t = series.times
      guard t.count > horizon else { continue }
      for i in 0..<(t.count - horizon) where t[i] - t[0] >= context - 1e-9 {
        let offsets = (1...horizon).map { ((t[i + $0] - t[i]) * 1e9).rounded() / 1e9 }
        if byOffsets[offsets] == nil { order.append(offsets) }
        byOffsets[offsets, default: []].append(Window(series: s, index: i))
      }
    }
    return order.map { byOffsets[$0]! }
  }

  public var model: Module { forecaster }
  public var modelName: String { architecture.rawValue }
  public var batchesPerEpoch: Int {
    trainGroups.reduce(0) { $0 + ($1.count + batchSize - 1) / batchSize }
  }
  public var samplesPerEpoch: Int { trainGroups.reduce(0) { $0 + $1.count } }
  public var metrics: [TaskMetric] { [] }
  public var functionEvaluations: FunctionEvaluations? { forecaster.lastStatistics.evaluations }

  /// Epoch `epoch`'s batches: each group's windows in an order drawn from (seed, epoch), cut into
  /// batches, the batches of all groups in one drawn order.
  func batches(epoch: Int) -> [Batch] {
    var rng = RandomState(seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(epoch + 1))
    func shuffled<T>(_ a: [T]) -> [T] {
      var a = a
      for i in stride(from: a.count - 1, to: 0, by: -1) {
        a.swapAt(i, Int(rng.next() % UInt64(i + 1)))
      }
      return a
    }
    var all: [Batch] = []
    for group in trainGroups {
      let order = shuffled(group)
      for start in stride(from: 0, to: order.count, by: batchSize) {
        all.append(Array(order[start..<min(start + batchSize, order.count)]))
      }
    }
    return shuffled(all)
  }

  public func trainingBatches(epoch: Int, from first: Int) -> AnyIterator<Batch> {
    AnyIterator(batches(epoch: epoch).dropFirst(first).makeIterator())
  }

  public func sampleCount(_ batch: Batch) -> Int { batch.count }

  /// The forecast of `batch` from `data` [horizon + 1, batch, d] (row 0 the given observation)
  /// and the observations it forecasts [horizon, batch, d].
  func forecast(_ batch: Batch, in data: TimeSeriesDataset) throws -> (Tensor, Tensor) {
    let d = data.dimension
    let first = batch[0]
    let t = data.series[first.series].times
    let times = [0] + (1...horizon).map { t[first.index + $0] - t[first.index] }
    let x0 = try Tensor(
      batch.flatMap { data.series[$0.series].values[$0.index] }, shape: [batch.count, d],
      on: backend)
    let backend = backend
    let history: (Double) throws -> Tensor = { u in
      try Tensor(
        batch.flatMap { w in
          let s = data.series[w.series]
          return s.value(at: s.times[w.index] + u)
        }, shape: [batch.count, d], on: backend)
    }
    var targets: [Double] = []
    for k in 1...horizon {
      for w in batch { targets += data.series[w.series].values[w.index + k] }
    }
    let predicted = try forecaster(x0, times: times, history: history)
    return (predicted, try Tensor(targets, shape: [horizon, batch.count, d], on: backend))
  }

  public func loss(on batch: Batch) throws -> (
    loss: Tensor, metricSums: () throws -> [String: Double]
  ) {
    let (predicted, target) = try forecast(batch, in: train)
    let future = try predicted.slice(axis: 0, 1..<(horizon + 1))
    return (try (future - target).square().mean(), { [:] })
  }

  public func evaluate() throws -> (loss: Double, metrics: [String: Double]) {
    (try testMSE(), [:])
  }

  /// The mean squared error of the forecasts of every test window; `forecasts` sees each
  /// batch's windows with their forecasts [horizon, batch, d] as host values.
  public func testMSE(forecasts: ((Batch, [Double]) -> Void)? = nil) throws -> Double {
    forecaster.train(false)
    defer { forecaster.train(true) }
    var sum = 0.0
    var count = 0
    for group in testGroups {
      for start in stride(from: 0, to: group.count, by: batchSize) {
        let batch = Array(group[start..<min(start + batchSize, group.count)])
        let (predicted, target) = try forecast(batch, in: test)
        let future = try predicted.slice(axis: 0, 1..<(horizon + 1))
        sum += try (future - target).square().sum().item()
        count += target.count
        if let forecasts { forecasts(batch, try future.toDoubles()) }
      }
    }
    return sum / Double(max(1, count))
  }
}

extension Trainer where Task == ForecastTask {
  /// A trainer of the forecaster `configuration` names, on `train`, tested on `test`.
  public convenience init(
    _ configuration: TrainingConfiguration, backend: any Backend, train: TimeSeriesDataset,
    test: TimeSeriesDataset
  ) throws {
    try self.init(
      ForecastTask(configuration, backend: backend, train: train, test: test),
      configuration: configuration, backend: backend)
  }
}
