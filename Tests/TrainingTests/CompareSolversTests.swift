import DiffEqNet
import Foundation
import XCTest

/// `runner compare-solvers` trains each (task, solver) pair through `runner train` and tabulates
/// what the runs' own metrics say.
final class CompareSolversTests: XCTestCase {
  func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("compare-\(UUID())")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
  }

  /// One row per pair, whose figures are those of the pair's `metrics.jsonl`: the final test
  /// metric, the seconds to the target (met at once by a target every run reaches) and NFE.
  func testTableRowsAreTheRunsOwnMetrics() throws {
    let out = try temporaryDirectory().appendingPathComponent("cmp")
    let (status, output) = try TrainingTests.runner([
      "compare-solvers", "--tasks", "odenet", "--solvers", "euler", "nag:0.9", "--epochs", "1",
      "--limit", "64", "--device", "cpu", "--target", "odenet=0", "--out", out.path,
    ])
    XCTAssertEqual(status, 0, output)
    let rows = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: out.appendingPathComponent("solvers.json"))) as? [[String: Any]])
    XCTAssertEqual(rows.map { $0["solver"] as? String }, ["euler", "nag:0.9"])
    for row in rows {
      let solver = try XCTUnwrap(row["solver"] as? String)
      let folder = out.appendingPathComponent(
        "odenet-" + solver.replacingOccurrences(of: ":", with: "-"))
      let text = try String(
        contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      let epoch = try XCTUnwrap(
        JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
      XCTAssertEqual(row["finalMetric"] as? Double, epoch["testAccuracy"] as? Double, solver)
      XCTAssertEqual(row["nfeForward"] as? Double, epoch["nfeForward"] as? Double, solver)
      XCTAssertEqual(row["nfeForward"] as? Double, 4, "rk-steps 4 of a fixed-step solver")
      XCTAssertEqual(row["secondsToTarget"] as? Double, epoch["seconds"] as? Double, solver)
    }
    let table = try String(contentsOf: out.appendingPathComponent("solvers.md"), encoding: .utf8)
    XCTAssertTrue(table.contains("| odenet | nag:0.9 | accuracy |"), table)
  }

  /// A target that names no task, or no number, is refused before any run starts.
  func testBadTargetsAreRefused() throws {
    let out = try temporaryDirectory().appendingPathComponent("cmp")
    for spec in ["odenet=abc", "mnist=0.9", "odenet"] {
      let (status, output) = try TrainingTests.runner([
        "compare-solvers", "--target", spec, "--out", out.path,
      ])
      XCTAssertNotEqual(status, 0, output)
      XCTAssertTrue(output.contains("--target \(spec)"), output)
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing ran")
  }
}
