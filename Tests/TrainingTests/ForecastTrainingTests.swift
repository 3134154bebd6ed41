import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// Forecasting series with node-series and ddnn-series on the common Trainer.
final class ForecastTrainingTests: XCTestCase {
  func configuration(_ model: ModelArchitecture) -> TrainingConfiguration {
    var c = TrainingConfiguration()
    c.model = model
    c.data = "mackey-glass"  // names series data; the tests hand the data sets over themselves
    c.width = 16
    c.batchSize = 32
    c.optimizer = .adam
    c.lr = 1e-2
    c.weightDecay = 0
    c.warmupSteps = 0
    c.solver = .rk4
    c.rkSteps = 1
    c.epochs = 4
    c.horizon = 10
    c.delay = 17
    return c
  }

  /// On Mackey–Glass (8 series of 120 steps, 2 held out), both models' training loss falls and
  /// their test MSE after training is below the MSE of the untrained model.
  func testSeriesModelsTrainOnMackeyGlass() throws {
    let (train, test) = try TimeSeriesDataset.mackeyGlass(count: 8, length: 120).heldOut()
    for model in [ModelArchitecture.nodeSeries, .ddnnSeries] {
      let c = configuration(model)
      let trainer = try Trainer(c, backend: CPUBackend(), train: train, test: test)
      let before = try trainer.task.testMSE()
      var history: [EpochMetrics] = []
      while !trainer.isFinished { history.append(try XCTUnwrap(try trainer.trainEpoch { _ in })) }
      let after = try trainer.task.testMSE()
      XCTAssertLessThan(after, 0.5 * before, "\(model): test MSE \(before) → \(after)")
      XCTAssertLessThan(history.last!.trainLoss, history.first!.trainLoss, "\(model)")
      XCTAssertEqual(history.last!.testLoss, after, accuracy: 1e-9 * max(1, after))
    }
  }

  /// Irregularly spaced series: windows with different forecast offsets go to different
  /// batches, and each forecast runs to its own observation times.
  func testIrregularSeriesForecast() throws {
    var series: [TimeSeries] = []
    for k in 0..<4 {
      var t = 0.0
      var times: [Double] = []
      for i in 0..<12 {
        times.append(t)
        t += i % 3 == 0 ? 0.5 : 1
      }
      series.append(
        TimeSeries(id: "\(k)", times: times, values: times.map { [sin($0 + Double(k)), cos($0)] }))
    }
    let data = try TimeSeriesDataset(name: "waves", dimension: 2, series: series)
    let (train, test) = try data.heldOut()
    var c = configuration(.ddnnSeries)
    c.delay = 1
    c.horizon = 3
    c.epochs = 1
    let task = try ForecastTask(c, backend: CPUBackend(), train: train, test: test)
    XCTAssertGreaterThan(task.batchesPerEpoch, 1, "different offsets need different batches")
    var forecasts = 0
    let mse = try task.testMSE { batch, values in
      forecasts += batch.count
      XCTAssertEqual(values.count, 3 * batch.count * 2)
    }
    XCTAssertTrue(mse.isFinite && mse > 0)
    // The held-out series (one of four): t ≥ 1 from its 3rd observation, 3 after up to the 9th.
    XCTAssertEqual(forecasts, 7)
  }

  /// ddnn-series with a learned τ: τ is a trained parameter (it moves from 17), and the forecast
  /// still improves.
  func testLearnedDelayTrains() throws {
    let (train, test) = try TimeSeriesDataset.mackeyGlass(count: 6, length: 120).heldOut()
    var c = configuration(.ddnnSeries)
    c.learnDelay = true
    c.epochs = 3
    let trainer = try Trainer(c, backend: CPUBackend(), train: train, test: test)
    XCTAssertTrue(trainer.model.trainableParameters().contains { $0.name == "learnedDelay.0" })
    let before = try trainer.task.testMSE()
    while !trainer.isFinished { _ = try trainer.trainEpoch { _ in } }
    let tau = try XCTUnwrap(trainer.task.forecaster.learnedDelay.first).value.item()
    XCTAssertGreaterThan(Swift.abs(tau - 17), 1e-4, "τ must train")
    XCTAssertTrue(tau > 1 && tau < 40, "τ \(tau)")
    XCTAssertLessThan(try trainer.task.testMSE(), before)
  }

  func testBadSeriesSettingsAreErrors() throws {
    var c = configuration(.ddnnSeries)
    c.delay = -1
    XCTAssertThrowsError(try c.validate())
    c.delay = 0.5
    c.rkSteps = 1
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("rk-steps")) }
    c = configuration(.nodeSeries)
    c.horizon = 0
    XCTAssertThrowsError(try c.validate())
    c = configuration(.nodeSeries)
    c.learnDelay = true
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("learn-delay")) }
    c = configuration(.odenet)
    let (train, test) = try TimeSeriesDataset.mackeyGlass(count: 2, length: 50).heldOut()
    XCTAssertThrowsError(try ForecastTask(c, backend: CPUBackend(), train: train, test: test))
    c = configuration(.ddnnSeries)
    c.horizon = 60
    XCTAssertThrowsError(try ForecastTask(c, backend: CPUBackend(), train: train, test: test))
  }
}
