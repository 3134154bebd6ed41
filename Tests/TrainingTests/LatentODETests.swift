import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// The latent ODE: its KL term, the spirals, and training on the common Trainer.
final class LatentODETests: XCTestCase {
  func configuration() -> TrainingConfiguration {
    var c = TrainingConfiguration()
    c.model = .latentODE
    c.data = "spirals"
    c.width = 16
    c.batchSize = 20
    c.optimizer = .adam
    c.lr = 1e-2
    c.weightDecay = 0
    c.warmupSteps = 0
    c.schedule = .constant
    c.solver = .rk4
    c.rkSteps = 10
    c.epochs = 6
    return c
  }

  /// The CPU backend and the first OpenCL device, when there is one.
  func backends() throws -> [any Backend] {
    if OpenCLBackend.devices().isEmpty {
      if TestRequirement.opencl.isRequired { XCTFail("DIFFEQNET_REQUIRE names opencl: no device") }
      return [CPUBackend()]
    }
    return [CPUBackend(), try OpenCLBackend(deviceIndex: 0)]
  }

  /// KL(N(μ, σ²) ‖ N(0, 1)) summed over the latent dimensions against the closed form of the
  /// KL between two Gaussians, log(σ₂/σ₁) + (σ₁² + (μ₁ − μ₂)²)/2σ₂² − ½ at μ₂ = 0, σ₂ = 1, in
  /// float64 on every backend that has it: relative error ≤ 1e-12 (float32: 1e-5).
  func testKLMatchesClosedForm() throws {
    for backend in try backends() {
      for dtype in DType.allCases where backend.supports(dtype) {
        var rng = RandomState(seed: 3)
        let (batch, latent) = (5, 4)
        let mu = (0..<(batch * latent)).map { _ in rng.nextNormal() }
        let logVariance = (0..<(batch * latent)).map { _ in 0.7 * rng.nextNormal() }
        let kl = try LatentODE.klToStandardNormal(
          mean: try Tensor(mu, shape: [batch, latent], dtype: dtype, on: backend),
          logVariance: try Tensor(logVariance, shape: [batch, latent], dtype: dtype, on: backend))
        XCTAssertEqual(kl.shape, [batch])
        let reference = (0..<batch).map { b in
          (0..<latent).reduce(0.0) { sum, j in
            let sigma = Foundation.exp(0.5 * logVariance[b * latent + j])
            let m = mu[b * latent + j]
            return sum + Foundation.log(1 / sigma) + (sigma * sigma + m * m) / 2 - 0.5
          }
        }
        let tolerance = dtype == .float64 ? 1e-12 : 1e-5
        XCTAssertLessThanOrEqual(
          relativeError(try kl.toDoubles(), reference), tolerance, "\(dtype) on \(backend.name)")
      }
    }
  }

  /// The spirals are a function of the seed; both directions occur; each series is observed at
  /// irregular times (gaps of different lengths) on its window's grid, with noise around the
  /// noiseless spiral.
  func testSpiralsAreIrregularNoisyAndSeeded() throws {
    var spirals = Spirals(seed: 4)
    spirals.count = 40
    let (observed, truth) = try spirals.generate()
    XCTAssertEqual(try Spirals(seed: 4).generate().observed.series[0], observed.series[0])
    XCTAssertNotEqual(try Spirals(seed: 5).generate().observed.series[0], observed.series[0])
    XCTAssertEqual(observed.dimension, 2)
    XCTAssertTrue(observed.series.contains { $0.id.hasSuffix("ccw") })
    XCTAssertTrue(observed.series.contains { $0.id.hasSuffix("cw") && !$0.id.hasSuffix("ccw") })
    var residuals: [Double] = []
    for (s, t) in zip(observed.series, truth.series) {
      XCTAssertEqual(s.id, t.id)
      XCTAssertGreaterThanOrEqual(s.times.count, 4)
      let gaps = zip(s.times.dropFirst(), s.times).map { ($0 - $1) / (t.times[1] - t.times[0]) }
      XCTAssertTrue(gaps.allSatisfy { abs($0 - $0.rounded()) < 1e-6 }, "on the grid")
      XCTAssertGreaterThan(Set(gaps.map { Int($0.rounded()) }).count, 1, "irregular")
      for (time, value) in zip(s.times, s.values) {
        let k = try XCTUnwrap(t.times.firstIndex { abs($0 - time) < 1e-12 })
        residuals += zip(value, t.values[k]).map { $0 - $1 }
      }
    }
    let std = (residuals.map { $0 * $0 }.reduce(0, +) / Double(residuals.count)).squareRoot()
    XCTAssertEqual(std, 0.3, accuracy: 0.03, "the observation noise")
  }

  /// A short run on spirals (80 training series, 20 test): the training loss (negative ELBO)
  /// falls, the test reconstruction MSE after training is below the untrained model's, and
  /// every metric is reported and finite.
  func testLossDecreasesOnSpirals() throws {
    var c = configuration()
    c.limit = 80
    let (train, test) = try c.loadSeries()
    XCTAssertEqual(train.series.count, 80)
    let trainer = try Trainer(c, backend: CPUBackend(), train: train, test: test, truth: nil)
    let before = try trainer.task.evaluate()
    var history: [EpochMetrics] = []
    while !trainer.isFinished { history.append(try XCTUnwrap(try trainer.trainEpoch { _ in })) }
    let last = try XCTUnwrap(history.last)
    XCTAssertLessThan(last.trainLoss, history[0].trainLoss)
    let after = try XCTUnwrap(last.test("reconstructionMSE"))
    XCTAssertLessThan(after, try XCTUnwrap(before.metrics["reconstructionMSE"]))
    for key in [
      "trainReconstructionMSE", "trainExtrapolationMSE", "testReconstructionMSE",
      "testExtrapolationMSE",
    ] {
      XCTAssertTrue(try XCTUnwrap(last.metrics[key]).isFinite, key)
    }
    XCTAssertGreaterThan(last.nfeForward, 0)
    print("latent-ode spirals:", history.map { ($0.trainLoss, $0.test("reconstructionMSE")!) })
  }

  /// A batch's ε comes from (seed, epoch, batch): the batches a resumed epoch hands over from
  /// batch 2 are those of the uninterrupted epoch, noise seeds included.
  func testBatchesAreAFunctionOfThePosition() throws {
    var c = configuration()
    c.limit = 50
    let (train, test) = try c.loadSeries()
    let task = try LatentODETask(c, backend: CPUBackend(), train: train, test: test)
    let all = Array(task.trainingBatches(epoch: 1, from: 0))
    let resumed = Array(task.trainingBatches(epoch: 1, from: 2))
    XCTAssertEqual(resumed.map(\.series), all.dropFirst(2).map(\.series))
    XCTAssertEqual(resumed.map(\.noiseSeed), all.dropFirst(2).map(\.noiseSeed))
    XCTAssertNotEqual(
      Array(task.trainingBatches(epoch: 2, from: 0)).map(\.noiseSeed), all.map(\.noiseSeed))
  }

  func testLatentSettingsAreValidated() throws {
    var c = configuration()
    c.observationNoise = 0
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("noise"), "\($0)") }
    c = configuration()
    c.extrapolatedFraction = 1
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("fraction"), "\($0)") }
    c = configuration()
    c.model = .nodeSeries
    c.latentDimension = 3
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("latent"), "\($0)") }
    c = configuration()
    c.data = "data/mnist-5k"
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("series"), "\($0)") }
  }
}

extension LatentODETests {
  /// `--data series:FILE.csv` through the shared reader: irregular 2-D series of different
  /// lengths (one of a single observation) train, and the metrics are finite; `--test-data`
  /// gives the test split.
  func testTrainsOnSeriesCSV() throws {
    var lines = ["series,time,v1,v2"]
    var rng = RandomState(seed: 8)
    for k in 0..<12 {
      var t = 0.0
      for i in 0..<(k == 5 ? 1 : 8 + k % 4) {
        lines.append("s\(k),\(t),\(sin(t + Double(k))),\(cos(2 * t))")
        t += 0.1 + 0.3 * rng.nextUniform() + (i == 2 ? 0.5 : 0)
      }
    }
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("latent-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
    let trainURL = folder.appendingPathComponent("train.csv")
    let testURL = folder.appendingPathComponent("test.csv")
    try (lines.joined(separator: "\n") + "\n").write(
      to: trainURL, atomically: true, encoding: .utf8)
    try (Array(lines.prefix(20)).joined(separator: "\n") + "\n").write(
      to: testURL, atomically: true, encoding: .utf8)
    var c = configuration()
    c.data = "series:" + trainURL.path
    c.testData = "series:" + testURL.path
    c.solver = .dopri5
    c.epochs = 2
    c.batchSize = 5
    let (train, test) = try c.loadSeries()
    XCTAssertEqual(train.series.count, 12)
    XCTAssertEqual(test.series.count, 3)
    let trainer = try Trainer(c, backend: CPUBackend(), train: train, test: test, truth: nil)
    while !trainer.isFinished {
      let m = try XCTUnwrap(try trainer.trainEpoch { _ in })
      XCTAssertTrue(m.trainLoss.isFinite && m.testLoss.isFinite)
      XCTAssertTrue(try XCTUnwrap(m.test("extrapolationMSE")).isFinite)
    }
    try trainer.task.writeArtifacts(to: folder, history: [])
    let svg = try String(contentsOf: folder.appendingPathComponent("latent.svg"), encoding: .utf8)
    XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("polyline"))
  }
}

extension LatentODETests {
  /// `runner train --model latent-ode --data spirals` writes its metrics (reconstruction and
  /// extrapolation MSE, NFE) and `latent.svg`; `runner eval` reports the test metrics and
  /// writes the reconstructions; a bad latent setting is refused by name.
  func testCLITrainsAndEvaluatesOnSpirals() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diffeqnet-latent-\(UUID())")
    defer { try? FileManager.default.removeItem(at: dir) }
    let (status, output) = try TrainingTests.runner([
      "train", "--model", "latent-ode", "--data", "spirals", "--limit", "40", "--width", "8",
      "--latent-dimension", "3", "--epochs", "1", "--batch-size", "20", "--optimizer", "adam",
      "--lr", "0.01", "--solver", "rk4", "--rk-steps", "5", "--device", "cpu", "--out", dir.path,
    ])
    XCTAssertEqual(status, 0, output)
    for file in [
      "config.json", "metrics.jsonl", "curve.svg", "latent.svg", "checkpoint.safetensors",
    ] {
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path),
        "missing \(file)")
    }
    let metrics = try String(
      contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    for key in ["testReconstructionMSE", "testExtrapolationMSE", "nfeForward"] {
      XCTAssertTrue(metrics.contains("\"\(key)\""), "\(key) in \(metrics)")
    }
    let predictions = dir.appendingPathComponent("p.csv")
    let (status2, output2) = try TrainingTests.runner([
      "eval", "--checkpoint", dir.appendingPathComponent("checkpoint.safetensors").path,
      "--device", "cpu", "--predictions", predictions.path,
    ])
    XCTAssertEqual(status2, 0, output2)
    XCTAssertTrue(output2.contains("extrapolation MSE"), output2)
    let table = try String(contentsOf: predictions, encoding: .utf8)
    XCTAssertTrue(table.hasPrefix("series,time,part,true_v1,true_v2,predicted_v1"), table)
    XCTAssertTrue(table.contains(",extrapolated,"))
    let (status3, output3) = try TrainingTests.runner([
      "train", "--model", "latent-ode", "--data", "spirals", "--observation-noise", "-1",
      "--out", dir.path,
    ])
    XCTAssertNotEqual(status3, 0)
    XCTAssertTrue(output3.contains("observation noise"), output3)
  }
}

extension LatentODETests {
  /// A latent-ODE run stopped mid-epoch and resumed from its checkpoint ends with exactly the
  /// parameters of an uninterrupted run: the batches and their ε follow the position.
  func testResumeContinuesBitForBit() throws {
    let cpu = CPUBackend()
    var c = configuration()
    c.limit = 60
    c.epochs = 2
    let (train, test) = try c.loadSeries()
    let straight = try Trainer(c, backend: cpu, train: train, test: test, truth: nil)
    while !straight.isFinished { _ = try straight.trainEpoch { _ in } }

    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diffeqnet-latent-resume-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("checkpoint.safetensors")
    let first = try Trainer(c, backend: cpu, train: train, test: test, truth: nil)
    _ = try first.trainEpoch { _ in }
    XCTAssertNil(try first.trainEpoch { p in if p.batch == 2 { first.stopRequested.set() } })
    try first.saveCheckpoint(to: url)

    let resumed = try Trainer(c, backend: cpu, train: train, test: test, truth: nil)
    try resumed.loadCheckpoint(from: url)
    XCTAssertEqual(resumed.batch, 2)
    while !resumed.isFinished { _ = try resumed.trainEpoch { _ in } }
    for (x, y) in zip(straight.model.namedParameters(), resumed.model.namedParameters()) {
      XCTAssertEqual(
        try x.parameter.value.toFloats(), try y.parameter.value.toFloats(),
        "\(x.name) differs after resume")
    }
  }
}

extension LatentODETests {
  /// A fixed-step solver steps on its own grid of step h and interpolates: at times on that
  /// grid the decoded values equal a solve stepped at h to those times (float64, 1e-12), and
  /// the evaluations are 4 per grid step for RK4 however many output times there are.
  func testFixedStepDecodingStepsOnItsOwnGrid() throws {
    let cpu = CPUBackend()
    var rng = RandomState(seed: 2)
    var options = ODEOptions(solver: .rk4)
    options.stepSize = 0.1
    let model = try LatentODE(
      dimension: 2, latentDimension: 3, width: 8, options: options, gradient: .direct,
      dtype: .float64, rng: &rng, on: cpu)
    let z0 = try Tensor.normal([4, 3], dtype: .float64, rng: &rng, on: cpu)
    let onGrid = [0, 0.3, 0.5, 1.0]
    let interpolated = try model.decode(z0, times: onGrid).toDoubles()
    XCTAssertEqual(model.lastStatistics.forwardEvaluations, 4 * 10)
    // odeint to the same times, stepping at h: every time lies on the grid.
    let reference = try odeint(
      model.dynamics.vectorField, z0, times: onGrid, options: options, gradient: .direct)
    let decoded = try model.decoder(reference.trajectory.reshaped([4 * 4, 3])).toDoubles()
    XCTAssertLessThanOrEqual(relativeError(interpolated, decoded), 1e-12)
    let many = (0...60).map { Double($0) / 60 }
    _ = try model.decode(z0, times: many)
    XCTAssertEqual(model.lastStatistics.forwardEvaluations, 4 * 10, "one step per grid interval")
  }
}
