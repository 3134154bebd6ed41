import DiffEqCore
import DiffEqData
import DiffEqModels
import DiffEqODE
import Foundation
import Kernels

/// Density estimation by a continuous normalizing flow (`cnf`): maximum likelihood on a table
/// of samples, the loss the negative log-likelihood in nats per dimension, −mean log p(x) / d
/// (so the test loss, also reported as `testNLL`, is the test NLL per dimension). Training takes
/// the configured trace estimator with probes drawn per batch from (seed, epoch, batch);
/// evaluation takes the exact trace, so that the test NLL is deterministic.
public final class DensityTask: TrainingTask {
  /// A batch: its rows and the seed of its Hutchinson probes.
  public struct Batch: Sendable {
    public var rows: [Int]
    public var probeSeed: UInt64
  }

  public let flow: ContinuousNormalizingFlow
  public let backend: any Backend
  public let train: TableDataset
  public let test: TableDataset
  public let batchSize: Int
  public let seed: UInt64
  let trainingTrace: TraceEstimator

  public init(
    _ configuration: TrainingConfiguration, backend: any Backend, train: TableDataset,
    test: TableDataset
  ) throws {
    try configuration.validate()
    guard configuration.model.isDensity else {
      throw DatasetError.invalidArgument("\(configuration.model) does not estimate densities")
    }
    guard train.dimension == test.dimension else {
      throw DatasetError.invalidArgument(
        "training rows have \(train.dimension) columns, test rows \(test.dimension)")
    }
    self.backend = backend
    self.train = train
    self.test = test
    batchSize = configuration.batchSize
    seed = configuration.seed
    trainingTrace = configuration.traceEstimator
    flow = try ModelZoo.makeFlow(
      configuration.modelConfiguration(channels: train.dimension, classes: 0),
      dimension: train.dimension, trace: trainingTrace, on: backend)
  }

  public var model: Module { flow }
  public var modelName: String { ModelArchitecture.cnf.rawValue }
  public var batchesPerEpoch: Int { (train.count + batchSize - 1) / batchSize }
  public var samplesPerEpoch: Int { train.count }
  public var metrics: [TaskMetric] { [TaskMetric("NLL", isFraction: false)] }
  public var functionEvaluations: FunctionEvaluations? { flow.lastStatistics.evaluations }

  /// Epoch `epoch`'s batches: the rows in an order drawn from (seed, epoch).
  func batches(epoch: Int) -> [Batch] {
    var rng = RandomState(seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(epoch + 1))
    var order = Array(0..<train.count)
    for i in stride(from: order.count - 1, to: 0, by: -1) {
      order.swapAt(i, Int(rng.next() % UInt64(i + 1)))
    }
    return stride(from: 0, to: order.count, by: batchSize).map { start in
      Batch(rows: Array(order[start..<min(start + batchSize, order.count)]), probeSeed: rng.next())
    }
  }

  public func trainingBatches(epoch: Int, from first: Int) -> AnyIterator<Batch> {
    AnyIterator(batches(epoch: epoch).dropFirst(first).makeIterator())
  }

  public func sampleCount(_ batch: Batch) -> Int { batch.rows.count }

  /// log p of `rows` of `data` [rows.count] with `estimator`'s trace.
  func logDensity(_ rows: [Int], of data: TableDataset, estimator: TraceEstimator, seed: UInt64)
    throws -> Tensor
  {
    let x = try Tensor(data.rows(rows), shape: [rows.count, data.dimension], on: backend)
    let trained = flow.trace
    flow.trace = estimator
    defer { flow.trace = trained }
    var rng = RandomState(seed: seed)
    return try flow.logDensity(x, rng: &rng).logDensity
  }

  public func loss(on batch: Batch) throws -> (
    loss: Tensor, metricSums: () throws -> [String: Double]
  ) {
    let logp = try logDensity(
      batch.rows, of: train, estimator: trainingTrace, seed: batch.probeSeed)
    let d = Double(train.dimension)
    let loss = try logp.mean() * (-1 / d)
    return (loss, { ["NLL": -(try logp.detached.sum().item()) / d] })
  }

  public func evaluate() throws -> (loss: Double, metrics: [String: Double]) {
    let nll = try testNLL()
    return (nll, ["NLL": nll])
  }

  /// The test split's negative log-likelihood in nats per dimension, by the exact trace.
  public func testNLL() throws -> Double {
    flow.train(false)
    defer { flow.train(true) }
    var sum = 0.0
    for start in stride(from: 0, to: test.count, by: batchSize) {
      let rows = Array(start..<min(start + batchSize, test.count))
      sum += try withParameters(
        of: flow, setTo: flow.trainableParameters().map { $0.parameter.value.detached }
      ) { try logDensity(rows, of: test, estimator: .exact, seed: 0).sum().item() }
    }
    return -sum / Double(test.count * test.dimension)
  }

  /// log p on the n × n grid of cell centres over [lower, upper]² (row-major, y outer), by the
  /// exact trace; 2-D flows only.
  public func logDensityGrid(lower: Double, upper: Double, n: Int) throws -> [Double] {
    guard train.dimension == 2 else {
      throw DatasetError.invalidArgument("a density grid needs 2-D data, not \(train.dimension)-D")
    }
    let h = (upper - lower) / Double(n)
    var points: [Double] = []
    for j in 0..<n {
      for i in 0..<n { points += [lower + (Double(i) + 0.5) * h, lower + (Double(j) + 0.5) * h] }
    }
    let grid = try TableDataset(name: "grid", columns: ["x", "y"], values: points)
    flow.train(false)
    defer { flow.train(true) }
    var out: [Double] = []
    for start in stride(from: 0, to: grid.count, by: max(batchSize, 256)) {
      let rows = Array(start..<min(start + max(batchSize, 256), grid.count))
      out += try withParameters(
        of: flow, setTo: flow.trainableParameters().map { $0.parameter.value.detached }
      ) { try logDensity(rows, of: grid, estimator: .exact, seed: 0).toDoubles() }
    }
    return out
  }

  /// `count` samples of the flow [count, d], carried back from N(0, I) draws of `seed`.
  public func samples(count: Int, seed: UInt64) throws -> [Double] {
    var rng = RandomState(seed: seed)
    let z = try Tensor.normal([count, train.dimension], rng: &rng, on: backend)
    flow.train(false)
    defer { flow.train(true) }
    return try flow.sample(from: z).samples.toDoubles()
  }
}

extension Trainer where Task == DensityTask {
  /// A trainer of a continuous normalizing flow on `train`, tested on `test`.
  public convenience init(
    _ configuration: TrainingConfiguration, backend: any Backend, train: TableDataset,
    test: TableDataset
  ) throws {
    try self.init(
      DensityTask(configuration, backend: backend, train: train, test: test),
      configuration: configuration, backend: backend)
  }
}
