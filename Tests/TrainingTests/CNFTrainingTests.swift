import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// The continuous normalizing flow on the common Trainer: settings, data, a short training run
/// whose density integrates to one, the CLI.
final class CNFTrainingTests: XCTestCase {
  func configuration(_ data: String = "two-moons") -> TrainingConfiguration {
    var c = TrainingConfiguration()
    c.model = .cnf
    c.data = data
    c.width = 24
    c.limit = 1024
    c.batchSize = 256
    c.epochs = 4
    c.optimizer = .adam
    c.lr = 1e-2
    c.weightDecay = 0
    c.warmupSteps = 0
    c.schedule = .constant
    c.device = .cpu
    return c
  }

  /// A short run lowers the test NLL, and the learned density, evaluated on a grid, integrates
  /// to 1 within 1% over a square that holds the flow's mass (the base density's tails beyond
  /// it are < 1e-4 for a flow this close to the identity).
  func testTrainedFlowDensityIntegratesToOne() throws {
    let c = configuration()
    let cpu = CPUBackend()
    let (train, test) = try c.loadDensity()
    XCTAssertEqual(train.count, 1024)
    XCTAssertEqual(test.count, 2000)
    let trainer = try Trainer(c, backend: cpu, train: train, test: test)
    let before = try trainer.task.testNLL()
    var last: EpochMetrics?
    while !trainer.isFinished { last = try trainer.trainEpoch { _ in } }
    let after = try XCTUnwrap(last?.test("NLL"))
    XCTAssertLessThan(after, before - 0.1, "test NLL \(before) → \(after)")
    XCTAssertGreaterThan(try XCTUnwrap(last?.nfeForward), 0)
    let (lower, upper, n) = (-7.0, 7.0, 100)
    let logp = try trainer.task.logDensityGrid(lower: lower, upper: upper, n: n)
    let cell = (upper - lower) / Double(n)
    let mass = logp.reduce(0) { $0 + exp($1) } * cell * cell
    XCTAssertEqual(mass, 1, accuracy: 0.01, "∫ p over the grid")
  }

  /// A table's columns are standardised on the training split (the last 20% held out), and a
  /// separate test table is standardised by the same statistics.
  func testTableDataIsStandardizedOnTheTrainingSplit() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnf-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let rows = (0..<10).map { "\($0),\(100 + 3 * $0)" }
    let file = dir.appendingPathComponent("t.csv")
    try (["a,b"] + rows).joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
    let (train, test) = try configuration("table:\(file.path)").loadDensity()
    XCTAssertEqual([train.count, test.count], [8, 2])
    let (mean, std) = train.columnStatistics()
    XCTAssertEqual(mean[0], 0, accuracy: 1e-12)
    XCTAssertEqual(std[1], 1, accuracy: 1e-12)
    // Row 8 is (8, 124): (8 − 3.5) / std(0…7).
    XCTAssertEqual(test.values[0], 4.5 / (5.25).squareRoot(), accuracy: 1e-12)
    var c = configuration("table:\(file.path)")
    c.testData = "table:\(file.path)"
    XCTAssertEqual(try c.loadDensity().test.count, 10)
    let bad = dir.appendingPathComponent("bad.csv")
    try "a,b\n1,2\n3,x\n".write(to: bad, atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try configuration("table:\(bad.path)").loadDensity()) {
      XCTAssertEqual("\($0)", "bad.csv: line 3: 'x' in column b is not a finite number")
    }
  }

  func testBadFlowSettingsAreErrors() throws {
    var c = configuration()
    c.data = "data/mnist-5k"
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("two-moons"), "\($0)") }
    c = TrainingConfiguration()
    c.data = "two-moons"
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("densit"), "\($0)") }
    c = TrainingConfiguration()
    c.trace = .exact
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("trace"), "\($0)") }
    c = configuration()
    c.testData = "series:x.csv"
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("table:"), "\($0)") }
    XCTAssertThrowsError(try TraceEstimator(parsing: "approximate"))
    c = configuration()
    c.limit = Int.max
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("limit"), "\($0)") }
    let json = try JSONEncoder().encode(configuration())
    XCTAssertEqual(
      try JSONDecoder().decode(TrainingConfiguration.self, from: json), configuration())
  }

  /// `runner train --model cnf` writes its pictures and metrics; `runner eval` reports the test
  /// NLL; a malformed table is an error naming its line.
  func testCLITrainsAFlow() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnf-cli-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let out = dir.appendingPathComponent("run")
    let (status, output) = try TrainingTests.runner([
      "train", "--model", "cnf", "--data", "8gaussians", "--trace", "exact", "--width", "16",
      "--limit", "512", "--batch-size", "256", "--epochs", "1", "--optimizer", "adam", "--lr",
      "1e-3", "--device", "cpu", "--out", out.path,
    ])
    XCTAssertEqual(status, 0, output)
    for file in ["metrics.jsonl", "density.svg", "samples.svg", "checkpoint.safetensors"] {
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), file)
    }
    let metrics = try String(
      contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    XCTAssertTrue(metrics.contains("\"testNLL\""), metrics)
    XCTAssertTrue(metrics.contains("\"nfeForward\""), metrics)
    let (evalStatus, evalOutput) = try TrainingTests.runner([
      "eval", "--checkpoint", out.appendingPathComponent("checkpoint.safetensors").path,
    ])
    XCTAssertEqual(evalStatus, 0, evalOutput)
    XCTAssertTrue(evalOutput.contains("test NLL"), evalOutput)
    let bad = dir.appendingPathComponent("bad.csv")
    try "a,b\n1,2\n3\n".write(to: bad, atomically: true, encoding: .utf8)
    let (badStatus, badOutput) = try TrainingTests.runner([
      "train", "--model", "cnf", "--data", "table:\(bad.path)", "--out", out.path,
    ])
    XCTAssertNotEqual(badStatus, 0)
    XCTAssertTrue(badOutput.contains("bad.csv: line 3"), badOutput)
    let (flagStatus, flagOutput) = try TrainingTests.runner([
      "train", "--model", "cnf", "--data", "two-moons", "--trace", "sometimes",
    ])
    XCTAssertNotEqual(flagStatus, 0)
    XCTAssertTrue(flagOutput.contains("trace"), flagOutput)
  }
}
