import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// `runner tune` on the first OpenCL device: it keeps one tiling of the candidates for the
/// device, and `bench kernels` then reports that tiling as tuned.
final class TuneCommandTests: XCTestCase {
  func testTuneKeepsATilingThatBenchReportsAsTuned() throws {
    guard let device = OpenCLBackend.devices().first else {
      throw missing(.opencl, "no OpenCL platform or device")
    }
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tune-\(UUID())")
    addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
    let environment = ["DIFFEQNET_OPENCL_TUNING": folder.path]
    // A record that cannot be used is replaced by the sweep, not an obstacle to it.
    let store = OpenCLTuningStore(directory: folder)
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try Data("{".utf8).write(to: store.url(for: device))

    let (status, output) = try TrainingTests.runner(
      [
        "tune", "--device", "opencl:\(device.index)", "--size", "64", "--repetitions", "1",
        "--json",
      ],
      environment: environment)
    XCTAssertEqual(status, 0, output)
    let lines = output.split(separator: "\n").compactMap {
      try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
    let timed = lines.filter { $0["op"] as? String == "tune" && $0["correct"] as? Bool == true }
    XCTAssertGreaterThanOrEqual(timed.count, 2, output)
    guard let choice = lines.first(where: { $0["op"] as? String == "tune_choice" }),
      let tile = choice["tile"] as? String
    else { return XCTFail("no tune_choice line in:\n\(output)") }
    // The choice is the tiling with the smallest geometric mean of its two medians.
    let fastest = timed.min {
      ($0["gemm_s"] as! Double) * ($0["conv_s"] as! Double)
        < ($1["gemm_s"] as! Double) * ($1["conv_s"] as! Double)
    }
    XCTAssertEqual(fastest?["tile"] as? String, tile)
    let record = try store.record(for: device)
    XCTAssertEqual(record?.tiling.description, tile)

    let (benchStatus, bench) = try TrainingTests.runner(
      [
        "bench", "kernels", "--device", "opencl:\(device.index)", "--only", "conv",
        "--repetitions", "1", "--json",
      ], environment: environment)
    XCTAssertEqual(benchStatus, 0, bench)
    XCTAssertTrue(bench.contains("\"tile\": \"\(tile) (tuned)\""), bench)
  }
}
