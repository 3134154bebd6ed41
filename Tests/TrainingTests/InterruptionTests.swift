import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// A run stopped by Ctrl-C, or killed outright, resumes to exactly the parameters of a run that
/// was never stopped.
final class InterruptionTests: XCTestCase {
  /// A small ODE-Net run: 64 batches per epoch of about 10 ms each, a checkpoint every 2.
  func arguments(_ out: URL, epochs: Int = 2) -> [String] {
    [
      "train", "--width", "8", "--limit", "512", "--batch-size", "8", "--epochs", String(epochs),
      "--device", "cpu", "--checkpoint-every", "2", "--out", out.path,
    ]
  }

  func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("interrupt-\(UUID())")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
  }

  /// `runner` started in the background, its output going to a file.
  func start(_ arguments: [String], log: URL) throws -> Process {
    let binary = try TrainingTests.builtRunner.get()
    FileManager.default.createFile(atPath: log.path, contents: nil)
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    let handle = try FileHandle(forWritingTo: log)
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    return process
  }

  /// Waits until `url` exists (the first checkpoint), failing after a minute.
  func waitFor(_ url: URL) throws {
    let deadline = Date().addingTimeInterval(60)
    while !FileManager.default.fileExists(atPath: url.path) {
      guard Date() < deadline else {
        throw RequirementMissing(reason: "no \(url.lastPathComponent)")
      }
      usleep(5_000)
    }
  }

  /// Every tensor (parameters and optimiser state) and the position of two checkpoints agree.
  func assertSameRun(_ a: URL, _ b: URL, _ label: String) throws {
    let x = try SafeTensorsFile.read(from: a)
    let y = try SafeTensorsFile.read(from: b)
    XCTAssertEqual(Set(x.tensors.keys), Set(y.tensors.keys), label)
    for (key, tensor) in x.tensors {
      XCTAssertEqual(tensor, y.tensors[key], "\(label): \(key) differs")
    }
    for key in ["epoch", "batch", Checkpoint.stepKey] {
      XCTAssertEqual(x.metadata[key], y.metadata[key], "\(label): \(key)")
    }
  }

  /// The uninterrupted run's final checkpoint, and how long the run went on after its first
  /// checkpoint appeared: the window in which an interruption lands mid-run on this machine.
  func timedReference(_ dir: URL) throws -> (checkpoint: URL, afterFirstCheckpoint: TimeInterval) {
    let out = dir.appendingPathComponent("reference")
    let log = dir.appendingPathComponent("reference.txt")
    let checkpoint = out.appendingPathComponent("checkpoint.safetensors")
    let process = try start(arguments(out), log: log)
    try waitFor(checkpoint)
    let first = Date()
    process.waitUntilExit()
    let window = Date().timeIntervalSince(first)
    let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
    XCTAssertEqual(process.terminationReason, .exit, text)
    XCTAssertEqual(process.terminationStatus, 0, text)
    return (checkpoint, window)
  }

  /// Resumes `out` until its run finishes.
  func resume(_ out: URL) throws {
    let (status, output) = try TrainingTests.runner(["train", "--resume", "--out", out.path])
    XCTAssertEqual(status, 0, output)
  }

  /// SIGINT: the run finishes its step, checkpoints at that batch, exits with 130, and resumes.
  func testCtrlCCheckpointsTheCurrentBatchAndResumes() throws {
    let dir = try temporaryDirectory()
    let (expected, window) = try timedReference(dir)
    let out = dir.appendingPathComponent("interrupted")
    let log = dir.appendingPathComponent("log.txt")
    let process = try start(arguments(out), log: log)
    try waitFor(out.appendingPathComponent("checkpoint.safetensors"))
    usleep(UInt32(min(window / 4, 0.15) * 1e6))
    kill(process.processIdentifier, SIGINT)
    process.waitUntilExit()
    let text = try String(contentsOf: log, encoding: .utf8)
    XCTAssertEqual(process.terminationReason, .exit, text)
    XCTAssertEqual(process.terminationStatus, 130, text)
    // "stopped at epoch E, batch B; checkpoint written …"
    let stopped = try XCTUnwrap(
      text.split(separator: "\n").first { $0.hasPrefix("stopped at epoch") }, text)
    let numbers = stopped.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    let metadata = try SafeTensorsFile.readMetadata(
      from: out.appendingPathComponent("checkpoint.safetensors"))
    XCTAssertEqual(metadata["epoch"].flatMap(Int.init), numbers[0] - 1, String(stopped))
    XCTAssertEqual(metadata["batch"].flatMap(Int.init), numbers[1], String(stopped))
    try resume(out)
    try assertSameRun(out.appendingPathComponent("checkpoint.safetensors"), expected, "Ctrl-C")
  }

  /// A second Ctrl-C while the first is being honoured ends the process at once with 130, by
  /// `_exit` rather than a crash of threads torn down under the workers (a race that `exit` from
  /// the signal queue could lose); the last checkpoint written is whole.
  func testSecondCtrlCExitsAtOnce() throws {
    let dir = try temporaryDirectory()
    let out = dir.appendingPathComponent("twice")
    let process = try start(arguments(out, epochs: 3), log: dir.appendingPathComponent("log.txt"))
    try waitFor(out.appendingPathComponent("checkpoint.safetensors"))
    kill(process.processIdentifier, SIGINT)
    usleep(1_000)
    kill(process.processIdentifier, SIGINT)
    process.waitUntilExit()
    XCTAssertEqual(process.terminationReason, .exit)
    XCTAssertEqual(process.terminationStatus, 130)
    XCTAssertNoThrow(
      try SafeTensorsFile.read(from: out.appendingPathComponent("checkpoint.safetensors")))
  }

  /// SIGKILL at several moments after the first checkpoint (some land during a checkpoint write,
  /// which happens every other batch): the surviving checkpoint loads, and resuming from it ends
  /// bit for bit where the uninterrupted run ends.
  func testKillNineAtAnyMomentResumesExactly() throws {
    let dir = try temporaryDirectory()
    let (expected, window) = try timedReference(dir)
    // The kill lands in the first half of the time the run has left, however fast this machine
    // is, so that it interrupts the run rather than racing its end.
    let latest = UInt32(min(window / 2, 2) * 1e6)
    var rng = SystemRandomNumberGenerator()
    for trial in 0..<3 {
      let out = dir.appendingPathComponent("killed-\(trial)")
      let log = dir.appendingPathComponent("log-\(trial).txt")
      let process = try start(arguments(out), log: log)
      try waitFor(out.appendingPathComponent("checkpoint.safetensors"))
      usleep(UInt32.random(in: 0...latest, using: &rng))
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      XCTAssertEqual(
        process.terminationReason, .uncaughtSignal,
        "the run ended before the kill (window \(window) s): "
          + ((try? String(contentsOf: log, encoding: .utf8)) ?? ""))
      // What survived is a whole checkpoint, whatever the write in flight was doing.
      XCTAssertNoThrow(
        try SafeTensorsFile.read(from: out.appendingPathComponent("checkpoint.safetensors")))
      try resume(out)
      try assertSameRun(
        out.appendingPathComponent("checkpoint.safetensors"), expected, "kill -9, trial \(trial)")
    }
  }

  /// A loss that becomes NaN stops the run naming the epoch and batch, and keeps the last good
  /// checkpoint; `--on-nan skip` passes over such batches and counts them.
  func testNonFiniteLossStopsOrIsSkipped() throws {
    let dir = try temporaryDirectory()
    let out = dir.appendingPathComponent("nan")
    let common = [
      "train", "--model", "resnet", "--width", "8", "--residual-blocks", "1", "--limit", "64",
      "--batch-size", "16", "--device", "cpu", "--warmup-steps", "0", "--out", out.path,
    ]
    var (status, output) = try TrainingTests.runner(common + ["--epochs", "1"])
    XCTAssertEqual(status, 0, output)
    let checkpoint = out.appendingPathComponent("checkpoint.safetensors")
    let good = try SafeTensorsFile.read(from: checkpoint)
    // A learning rate of 1e300 overflows the parameters in the first step of epoch 2.
    (status, output) = try TrainingTests.runner(
      ["train", "--resume", "--epochs", "2", "--lr", "1e300", "--out", out.path])
    XCTAssertNotEqual(status, 0, output)
    XCTAssertTrue(output.contains("at epoch 2, batch "), output)
    XCTAssertEqual(try SafeTensorsFile.read(from: checkpoint), good, "the last good checkpoint")

    (status, output) = try TrainingTests.runner(
      [
        "train", "--resume", "--epochs", "2", "--lr", "1e300", "--on-nan", "skip", "--out",
        out.path,
      ])
    XCTAssertEqual(status, 0, output)
    XCTAssertTrue(output.contains("batches skipped (not finite)"), output)
    let metrics = try String(
      contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    XCTAssertTrue(metrics.contains(#""skippedBatches":"#), metrics)
  }

  /// A DEQ solve that must converge and does not, and a NaN inside a solve, stop the run with
  /// the reason, the epoch and the batch; unconverged solves otherwise count in the metrics.
  func testDEQFailuresNameTheBatch() throws {
    let dir = try temporaryDirectory()
    let out = dir.appendingPathComponent("deq")
    let common = [
      "train", "--model", "deq", "--width", "8", "--limit", "64", "--batch-size", "16",
      "--device", "cpu", "--warmup-steps", "0", "--deq-iterations", "2", "--out", out.path,
    ]
    var (status, output) = try TrainingTests.runner(common + ["--epochs", "1"])
    XCTAssertEqual(status, 0, output)
    let metrics = try String(
      contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    XCTAssertTrue(metrics.contains(#""trainUnconverged":1"#), metrics)

    (status, output) = try TrainingTests.runner(
      common + ["--epochs", "1", "--deq-unconverged", "stop", "--out", out.path + "-strict"])
    XCTAssertNotEqual(status, 0, output)
    XCTAssertTrue(output.contains("did not converge"), output)
    XCTAssertTrue(output.contains("epoch 1, batch 1: "), output)

    // A learning rate of 1e300 overflows the parameters in the first step of epoch 2: the next
    // batch's solve meets NaN.
    (status, output) = try TrainingTests.runner(
      ["train", "--resume", "--epochs", "2", "--lr", "1e300", "--out", out.path])
    XCTAssertNotEqual(status, 0, output)
    XCTAssertTrue(output.contains("NaN or infinite"), output)
    XCTAssertTrue(output.contains("epoch 2, batch 2: "), output)
  }
}
