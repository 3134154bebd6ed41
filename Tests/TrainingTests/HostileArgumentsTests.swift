import DiffEqNet
import Foundation
import XCTest

/// Settings and files that once trapped, hung or allocated without bound, given to `runner` as a
/// user would: each must end in a non-zero exit (not a signal) with a message naming the problem.
final class HostileArgumentsTests: XCTestCase {
  func expectRefusal(
    _ arguments: [String], _ message: String, environment: [String: String] = [:],
    file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let (status, output) = try TrainingTests.runner(arguments, environment: environment)
    XCTAssertNotEqual(status, 0, "\(arguments) must fail", file: file, line: line)
    XCTAssertTrue(
      output.contains(message), "\(arguments): expected '\(message)' in:\n\(output)", file: file,
      line: line)
  }

  func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-\(UUID())")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
  }

  func testOverflowingFlagsAreRefused() throws {
    let big = String(Int.max)
    try expectRefusal(["train", "--epochs", big], "epochs must lie in 1...1000000")
    try expectRefusal(["train", "--batch-size", big], "batch size must lie in")
    try expectRefusal(["train", "--width", String(1 << 62)], "width must lie in 1...4096")
    try expectRefusal(["train", "--rk-steps", big, "--model", "rknet"], "rk-steps must lie in")
    try expectRefusal(["train", "--rk-steps", "1000000000"], "rk-steps must lie in")
    try expectRefusal(["train", "--norm-groups", "3", "--width", "8"], "norm groups must divide")
  }

  func testOverflowingSettingsInAConfigFileAreRefused() throws {
    let dir = try temporaryDirectory()
    let config = dir.appendingPathComponent("run.json")
    try #"{"epochs": 9223372036854775807}"#.write(to: config, atomically: true, encoding: .utf8)
    try expectRefusal(["train", "--config", config.path], "epochs must lie in")
    try #"{"solver": "rk9"}"#.write(to: config, atomically: true, encoding: .utf8)
    try expectRefusal(["train", "--config", config.path], "unknown solver rk9")
  }

  /// A checkpoint whose own settings or optimiser step are hostile is refused on resume.
  func testHostileCheckpointsAreRefusedOnResume() throws {
    let dir = try temporaryDirectory()
    let (status, output) = try TrainingTests.runner([
      "train", "--model", "resnet", "--width", "8", "--residual-blocks", "1", "--limit", "32",
      "--epochs", "1", "--device", "cpu", "--out", dir.path,
    ])
    XCTAssertEqual(status, 0, output)
    let url = dir.appendingPathComponent("checkpoint.safetensors")
    let good = try SafeTensorsFile.read(from: url)

    var file = good
    file.metadata[Checkpoint.stepKey] = String(Int.max)
    try file.write(to: url)
    try expectRefusal(["train", "--resume", "--epochs", "2", "--out", dir.path], "outside 0...")

    file = good
    file.metadata["config"] = file.metadata["config"]!.replacingOccurrences(
      of: #""epochs":1"#, with: #""epochs":9223372036854775807"#)
    try file.write(to: url)
    try expectRefusal(["train", "--resume", "--out", dir.path], "epochs must lie in")
  }

  /// A checkpoint write that fails (the file-size limit, as a full disk would, makes `write`
  /// fail with EFBIG) is a clear error, and the previous checkpoint stays whole and loadable,
  /// with no temporary file left beside it.
  func testAFailedCheckpointWriteKeepsThePreviousOne() throws {
    let dir = try temporaryDirectory()
    let common = [
      "--model", "resnet", "--width", "8", "--residual-blocks", "1", "--limit", "32",
      "--device", "cpu", "--out", dir.path,
    ]
    var (status, output) = try TrainingTests.runner(["train", "--epochs", "1"] + common)
    XCTAssertEqual(status, 0, output)
    let url = dir.appendingPathComponent("checkpoint.safetensors")
    let before = try SafeTensorsFile.read(from: url)
    let binary = try TrainingTests.builtRunner.get().path
    // 16 blocks of 512 bytes: room for config.json, not for a checkpoint. SIGXFSZ is ignored so
    // that the write fails instead of killing the process.
    let script = "ulimit -f 16; trap '' XFSZ; exec \"$0\" \"$@\""
    (status, output) = try TrainingTests.run(
      "/bin/bash", ["-c", script, binary, "train", "--resume", "--epochs", "2"] + common)
    XCTAssertNotEqual(status, 0, output)
    XCTAssertTrue(output.contains("cannot write"), output)
    XCTAssertTrue(output.contains("checkpoint.safetensors"), output)
    XCTAssertEqual(try SafeTensorsFile.read(from: url), before, "the previous checkpoint")
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path)
      .filter { $0.contains(".tmp-") }
    XCTAssertEqual(leftovers, [], "temporary files left behind")
  }

  func testDevicesAndFIFOsAreRefusedAsCheckpoints() throws {
    try expectRefusal(["eval", "--checkpoint", "/dev/zero"], "not a regular file")
    try expectRefusal(
      ["export", "--checkpoint", "/dev/zero", "--torchdiffeq", "/dev/null"],
      "not a regular file")
    let fifo = try temporaryDirectory().appendingPathComponent("checkpoint.safetensors")
    XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
    try expectRefusal(["eval", "--checkpoint", fifo.path], "not a regular file")
    try expectRefusal(
      ["train", "--resume", "--out", fifo.deletingLastPathComponent().path], "not a regular file")
  }

  func testMalformedOpenCLTuningIsRefused() throws {
    for (name, value, message) in [
      ("DIFFEQNET_OPENCL_GEMM_TILE", "0,0,0", "TS a multiple of WPT"),
      ("DIFFEQNET_OPENCL_GEMM_TILE", "16,3,8", "TS a multiple of WPT"),
      ("DIFFEQNET_OPENCL_GEMM_TILE", "16,4", "is not TS,WPT,TSK"),
      ("DIFFEQNET_OPENCL_REDUCTION_WG", "3", "not a positive power of two"),
      ("DIFFEQNET_OPENCL_REDUCTION_WG", "x", "is not an integer"),
    ] {
      try expectRefusal(
        ["bench", "kernels", "--device", "opencl", "--only", "gemm"], message,
        environment: [name: value])
    }
    // A tuning record that cannot be used names its file rather than being skipped silently.
    let devices = OpenCLBackend.devices()
    guard let device = devices.first else { return }
    let folder = try temporaryDirectory()
    let record = OpenCLTuningStore(directory: folder).url(for: device)
    try Data(#"{"tiling": {"ts": 64, "wpt": 4}}"#.utf8).write(to: record)
    try expectRefusal(
      ["bench", "kernels", "--device", "opencl", "--only", "gemm"], record.path,
      environment: ["DIFFEQNET_OPENCL_TUNING": folder.path])
    try expectRefusal(["tune", "--device", "cpu"], "the CPU backend has no tiling")
    try expectRefusal(["tune", "--size", "99999999999999999999"], "--size")
    try expectRefusal(["tune", "--size", "100000"], "--size must be in 64...8192")
  }
}
