import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// End-to-end training on a slice of the bundled MNIST subset, checkpoint resume, and the CLI's
/// argument validation.
final class TrainingTests: XCTestCase {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

  func configuration(_ model: ModelArchitecture) -> TrainingConfiguration {
    var c = TrainingConfiguration()
    c.model = model
    c.data = Self.root.appendingPathComponent("data/mnist-5k").path
    c.width = 16
    c.residualBlocks = 1
    c.limit = 512
    c.batchSize = 32
    c.lr = 0.1
    c.warmupSteps = 10
    c.cropPadding = 0
    c.solver = .rk4
    c.rkSteps = 2
    return c
  }

  func backends() throws -> [any Backend] {
    if OpenCLBackend.devices().isEmpty {
      if TestRequirement.opencl.isRequired { XCTFail("DIFFEQNET_REQUIRE names opencl: no device") }
      return [CPUBackend()]
    }
    return [CPUBackend(), try OpenCLBackend(deviceIndex: 0)]
  }

  func testTrainingReducesLossAndBeatsChance() throws {
    for backend in try backends() {
      // 12 epochs each: with 8 the ODE-Net was still at the edge of its initial plateau, and
      // whether it had left it depended on rounding (float32 summation order), not on the code.
      for model in [ModelArchitecture.resnet, .odenet] {
        let epochs = 12
        var c = configuration(model)
        c.epochs = epochs
        let (train, test) = try c.loadData()
        let trainer = try Trainer(c, backend: backend, train: train, test: test)
        var first: Double?
        var history: [EpochMetrics] = []
        while !trainer.isFinished {
          let m = try XCTUnwrap(try trainer.trainEpoch { p in if first == nil { first = p.loss } })
          history.append(m)
        }
        let last = try XCTUnwrap(history.last)
        // A narrow network (16 channels) on 512 images for 100-200 steps: far from converged,
        // but the loss must have fallen by a quarter and accuracy be at least 3× chance (10%).
        XCTAssertLessThan(
          last.trainLoss, 0.75 * first!,
          "\(model) on \(backend.name): loss \(first!) → \(last.trainLoss)")
        XCTAssertGreaterThan(
          last.test("accuracy") ?? 0, 0.3,
          "\(model) on \(backend.name): test accuracy \(last.test("accuracy") ?? 0)")
        if model == .odenet { XCTAssertGreaterThan(last.nfeForward, 0, "ODE-Net must report NFE") }
      }
    }
  }

  /// A DEQ classifier trains with either gradient, and the continuous DEQ too: the loss falls,
  /// and the metrics report the evaluations of f (backward ones only for the implicit gradient).
  func testDEQTrainsWithImplicitAndJacobianFreeGradients() throws {
    for (model, gradient, solver) in [
      (ModelArchitecture.deq, TrainingConfiguration.EquilibriumGradientKind.implicit, nil),
      (.deq, .implicit, TrainingConfiguration.FixedPointKind.broyden),
      (.deq, .jfb, nil), (.cdeq, .implicit, nil), (.skipDEQ, .implicit, nil),
      (.skipRegCDEQ, .jfb, nil),
    ] {
      var c = configuration(model)
      c.solver = .dopri5
      c.limit = 256
      c.epochs = 3
      c.deqGradient = gradient
      c.deqSolver = solver
      let (train, test) = try c.loadData()
      let trainer = try Trainer(c, backend: CPUBackend(), train: train, test: test)
      var history: [EpochMetrics] = []
      while !trainer.isFinished { history.append(try XCTUnwrap(try trainer.trainEpoch { _ in })) }
      XCTAssertLessThan(history.last!.trainLoss, history.first!.trainLoss, "\(model) \(gradient)")
      XCTAssertGreaterThan(history.last!.nfeForward, 1, "\(model) \(gradient)")
      let last = history.last!
      let residual = try XCTUnwrap(last.train("forwardResidual"), "\(model)")
      XCTAssertTrue(residual > 0 && residual < 1, "\(model): forward residual \(residual)")
      let unconverged = try XCTUnwrap(last.train("unconverged"))
      XCTAssertTrue((0...1).contains(unconverged), "\(model): unconverged \(unconverged)")
      if gradient == .implicit {
        XCTAssertGreaterThan(last.nfeBackward, 0)
        XCTAssertNotNil(last.train("backwardResidual"), "\(model)")
      } else {
        XCTAssertEqual(last.nfeBackward, 0)
        XCTAssertNil(last.train("backwardResidual"), "\(model)")
      }
    }
  }

  /// `runner train`'s defaults (ODE-Net, Dopri5 at 1e-3, the backsolve adjoint, float32, width
  /// 64), one batch on every backend: a finite loss, and forward and backward solves that ran.
  func testDefaultConfigurationTrainsOnEveryBackend() throws {
    for backend in try backends() {
      var c = TrainingConfiguration()
      c.data = Self.root.appendingPathComponent("data/mnist-5k").path
      c.limit = 32
      c.batchSize = 32
      c.epochs = 1
      XCTAssertEqual(c.model, .odenet)
      XCTAssertEqual(c.solver, .dopri5)
      XCTAssertEqual(c.gradient, .backsolve)
      let (train, test) = try c.loadData()
      let trainer = try Trainer(c, backend: backend, train: train, test: test)
      let m = try XCTUnwrap(try trainer.trainEpoch { _ in })
      XCTAssertTrue(m.trainLoss.isFinite && m.testLoss.isFinite, backend.name)
      XCTAssertGreaterThan(m.nfeForward, 0, backend.name)
      XCTAssertGreaterThan(m.nfeBackward, 0, backend.name)
    }
  }

  /// Training two epochs equals training one, stopping mid-way through the second (as Ctrl-C
  /// does), writing a checkpoint, and resuming in a fresh trainer: every parameter bit for bit.
  func testResumeContinuesBitForBit() throws {
    let cpu = CPUBackend()
    var c = configuration(.odenet)
    c.limit = 128
    c.epochs = 2
    c.cropPadding = 2
    let (train, test) = try c.loadData()
    let straight = try Trainer(c, backend: cpu, train: train, test: test)
    while !straight.isFinished { _ = try straight.trainEpoch { _ in } }

    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diffeqnet-resume-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("checkpoint.safetensors")
    let first = try Trainer(c, backend: cpu, train: train, test: test)
    _ = try first.trainEpoch { _ in }
    let stopped = try first.trainEpoch { p in if p.batch == 2 { first.stopRequested.set() } }
    XCTAssertNil(stopped, "a stop request ends the epoch early")
    XCTAssertEqual(first.batch, 2)
    try first.saveCheckpoint(to: url)

    let resumed = try Trainer(c, backend: cpu, train: train, test: test)
    try resumed.loadCheckpoint(from: url)
    XCTAssertEqual(resumed.epoch, 1)
    XCTAssertEqual(resumed.batch, 2)
    while !resumed.isFinished { _ = try resumed.trainEpoch { _ in } }
    let a = straight.model.namedParameters()
    let b = resumed.model.namedParameters()
    XCTAssertEqual(a.map(\.name), b.map(\.name))
    for (x, y) in zip(a, b) {
      XCTAssertEqual(
        try x.parameter.value.toFloats(), try y.parameter.value.toFloats(),
        "\(x.name) differs after resume")
    }
  }

  /// An LM-ResNet with stochastic depth stopped mid-epoch and resumed from its checkpoint ends
  /// with exactly the parameters and running statistics of an uninterrupted run (the drops
  /// follow the position), and each epoch's metrics carry its k_n.
  func testLMResNetWithStochasticDepthResumesExactlyAndLogsK() throws {
    let cpu = CPUBackend()
    var c = configuration(.lmresnet20)
    c.limit = 96
    c.epochs = 2
    c.survival = 0.5
    let (train, test) = try c.loadData()
    let straight = try Trainer(c, backend: cpu, train: train, test: test)
    var history: [EpochMetrics] = []
    while !straight.isFinished { history.append(try straight.trainEpoch { _ in }!) }
    for m in history {
      for i in 1...6 {
        let k = try XCTUnwrap(m.metrics["k\(i)"], "epoch \(m.epoch) logs k\(i)")
        XCTAssert(abs(k) < 1, "|k| < 1")
      }
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diffeqnet-lm-resume-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("checkpoint.safetensors")
    let first = try Trainer(c, backend: cpu, train: train, test: test)
    _ = try first.trainEpoch { p in if p.batch == 1 { first.stopRequested.set() } }
    try first.saveCheckpoint(to: url)
    let resumed = try Trainer(c, backend: cpu, train: train, test: test)
    try resumed.loadCheckpoint(from: url)
    while !resumed.isFinished { _ = try resumed.trainEpoch { _ in } }
    let a = straight.model.namedParameters()
    let b = resumed.model.namedParameters()
    XCTAssertEqual(a.map(\.name), b.map(\.name))
    for (x, y) in zip(a, b) {
      XCTAssertEqual(
        try x.parameter.value.toFloats(), try y.parameter.value.toFloats(),
        "\(x.name) differs after resume")
    }
  }

  func testForeignAndTruncatedCheckpointsAreRejected() throws {
    let cpu = CPUBackend()
    let c = configuration(.resnet)
    let (train, test) = try c.loadData()
    let trainer = try Trainer(c, backend: cpu, train: train, test: test)
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diffeqnet-ckpt-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("a.safetensors")
    try trainer.saveCheckpoint(to: url)
    // Another architecture's checkpoint.
    let other = try Trainer(configuration(.odenet), backend: cpu, train: train, test: test)
    XCTAssertThrowsError(try other.loadCheckpoint(from: url)) {
      XCTAssertTrue("\($0)".contains("a.safetensors"), "\($0)")
    }
    // A truncated file.
    let bytes = try Data(contentsOf: url)
    let cut = dir.appendingPathComponent("cut.safetensors")
    try bytes.prefix(bytes.count / 2).write(to: cut)
    XCTAssertThrowsError(try trainer.loadCheckpoint(from: cut)) {
      XCTAssertTrue("\($0)".contains("cut.safetensors"), "\($0)")
    }
    // A foreign safetensors file (valid format, not ours).
    let foreign = dir.appendingPathComponent("foreign.safetensors")
    try SafeTensorsFile(tensors: ["w": try HostTensor([1, 2], shape: [2])]).write(to: foreign)
    XCTAssertThrowsError(try trainer.loadCheckpoint(from: foreign))
  }

  /// Runs the built `runner` in `directory` and returns its exit status and combined output.
  static func runner(
    _ arguments: [String], in directory: URL = root, environment: [String: String] = [:]
  ) throws -> (Int32, String) {
    try run(try builtRunner.get().path, arguments, in: directory, environment: environment)
  }

  /// The release `runner`, built once per test process into a scratch folder of its own
  /// (`.build-cli`: SwiftPM's lock on `.build` is held by the test run), so the CLI tests never
  /// run a binary older than the sources.
  static let builtRunner = Result<URL, Error> {
    let scratch = root.appendingPathComponent(".build-cli").path
    let common = ["build", "-c", "release", "--product", "runner", "--scratch-path", scratch]
    let (status, output) = try run("/usr/bin/env", ["swift"] + common)
    guard status == 0 else {
      throw missing(.runner, "runner did not build:\n\(output.suffix(2000))")
    }
    let (_, path) = try run("/usr/bin/env", ["swift"] + common + ["--show-bin-path"])
    let binary = URL(fileURLWithPath: path.trimmingCharacters(in: .whitespacesAndNewlines))
      .appendingPathComponent("runner")
    guard FileManager.default.isExecutableFile(atPath: binary.path) else {
      throw missing(.runner, "runner is not built at \(binary.path)")
    }
    return binary
  }

  /// Runs `executable` with `arguments` and returns its exit status and combined output; a
  /// process that ends by a signal fails the test.
  static func run(
    _ executable: String, _ arguments: [String], in directory: URL = root,
    environment: [String: String] = [:]
  ) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = directory
    if !environment.isEmpty {
      process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    // A release-mode trap prints nothing: the termination reason is what tells a crash.
    XCTAssertEqual(
      process.terminationReason, .exit,
      "\(executable) \(arguments.joined(separator: " ")) ended by signal \(process.terminationStatus):\n\(output)"
    )
    return (process.terminationStatus, output)
  }

  /// `runner train` writes its outputs, and `--resume` continues the run it left.
  func testCLITrainsAndResumes() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diffeqnet-cli-\(UUID())")
    defer { try? FileManager.default.removeItem(at: dir) }
    let common = [
      "--model", "resnet", "--width", "8", "--residual-blocks", "1", "--limit", "64",
      "--batch-size", "32", "--device", "cpu", "--out", dir.path,
    ]
    let (status, output) = try Self.runner(["train", "--epochs", "1"] + common)
    XCTAssertEqual(status, 0, output)
    for file in ["config.json", "metrics.jsonl", "curve.svg", "checkpoint.safetensors"] {
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path),
        "missing \(file)")
    }
    let (status2, output2) = try Self.runner([
      "train", "--resume", "--epochs", "2", "--out", dir.path,
    ])
    XCTAssertEqual(status2, 0, output2)
    XCTAssertTrue(output2.contains("resuming resnet at epoch 2"), output2)
    let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n")
    XCTAssertEqual(lines.count, 2, "one metrics line per epoch across the resume")
    let (status3, output3) = try Self.runner([
      "eval", "--checkpoint", dir.appendingPathComponent("checkpoint.safetensors").path, "--device",
      "cpu",
    ])
    XCTAssertEqual(status3, 0, output3)
    XCTAssertTrue(output3.contains("accuracy"), output3)
  }

  /// With no --data, `runner train` finds the bundled data set from any working directory, and
  /// `--config` takes a run's config.json (here one written by checkpoint format 1's runner).
  func testCLITrainsFromAnyDirectoryWithAnOldConfig() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diffeqnet-anywhere-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let config = Self.root.appendingPathComponent("Tests/Fixtures/main-v1/config.json")
    let (status, output) = try Self.runner(
      [
        "train", "--config", config.path, "--epochs", "1", "--limit", "64", "--out", "run",
      ], in: dir)
    XCTAssertEqual(status, 0, output)
    XCTAssertTrue(output.contains("from data/mnist-5k"), output)
    let saved = try Data(contentsOf: dir.appendingPathComponent("run/config.json"))
    let run = try XCTUnwrap(try JSONSerialization.jsonObject(with: saved) as? [String: Any])
    let settings = try XCTUnwrap(run["configuration"] as? [String: Any])
    XCTAssertEqual(settings["width"] as? Int, 8, "the old config's width was applied")
    XCTAssertEqual(settings["gradient"] as? String, "backsolve")
    // An explicit --data stays relative to the working directory.
    let (status2, output2) = try Self.runner(
      ["train", "--data", "data/mnist-5k", "--epochs", "1", "--out", "run2"], in: dir)
    XCTAssertNotEqual(status2, 0, output2)
    XCTAssertTrue(output2.contains("does not exist"), output2)
  }

  func testCLIRejectsBadArguments() throws {
    let cases: [([String], String)] = [
      (["train", "--epochs", "0"], "epochs must lie in 1..."),
      (["train", "--model", "nope"], "'nope' is invalid for '--model"),
      (["train", "--model", "resnet21"], "'resnet21' is invalid for '--model"),
      (["train", "--model", "lmresnet20", "--survival", "0"], "survival must lie in (0, 1]"),
      (["train", "--data", "/nonexistent/folder", "--epochs", "1"], "does not exist"),
      (["train", "--device", "gpu7"], "gpu7"),
      (["train", "--solver", "rk9"], "unknown solver"),
      (["eval", "--checkpoint", "/nonexistent.safetensors"], "nonexistent.safetensors"),
      (["bench", "kernels", "--only", "gemm,fft"], "unknown group 'fft'"),
      (["bench", "solvers", "--only", "rk5_adjoint"], "unknown group 'rk5_adjoint'"),
    ]
    for (arguments, message) in cases {
      let (status, output) = try Self.runner(arguments)
      XCTAssertNotEqual(status, 0, "\(arguments) must fail")
      XCTAssertTrue(output.contains(message), "\(arguments): expected '\(message)' in:\n\(output)")
      XCTAssertFalse(output.contains("Fatal error"), "\(arguments) crashed:\n\(output)")
    }
  }
}
