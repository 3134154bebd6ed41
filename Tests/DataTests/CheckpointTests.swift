import DiffEqNet
import Foundation
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Saving and restoring modules and optimisers, the errors of mismatched checkpoints, and
/// atomic replacement of checkpoint files.
final class CheckpointTests: XCTestCase {
  /// One optimiser update with every gradient element equal to `g`.
  func step(_ model: Module, _ optimizer: any Optimizer, _ g: Double) throws {
    var grads: [String: Tensor] = [:]
    for (name, p) in model.trainableParameters() {
      grads[name] = try Tensor.full(p.value.shape, g, dtype: p.value.dtype, on: cpu)
    }
    try optimizer.update(model, gradients: grads)
  }

  func stateBits(_ optimizer: any Optimizer) throws -> [String: [UInt64]] {
    try optimizer.stateTensors().mapValues { try $0.toDoubles().map(\.bitPattern) }
  }

  func testSaveAndLoadRestoresTheRun() throws {
    let model = try TinyNet(seed: 1)
    let adam = Adam(learningRate: 0.01)
    try step(model, adam, 0.1)
    try step(model, adam, -0.3)
    var rng = RandomState(seed: 77)
    _ = rng.next()
    let url = try makeTemporaryDirectory().appendingPathComponent("run.safetensors")
    try Checkpoint.save(
      model: model, optimizer: adam,
      metadata: [
        "model": "tiny", "config": #"{"width":3}"#, "epoch": "4", "rng": Checkpoint.json(rng),
      ], to: url)

    let file = try SafeTensorsFile.read(from: url)
    var expected: Set<String> = ["weight", "bias", "runningMean", "head.scale"]
    for slot in ["exp_avg", "exp_avg_sq"] {
      for name in ["weight", "bias", "head.scale"] { expected.insert("optimizer.\(slot).\(name)") }
    }
    XCTAssertEqual(Set(file.tensors.keys), expected)
    XCTAssertEqual(file.tensors["head.scale"]?.dtype, .float64)
    XCTAssertEqual(file.tensors["head.scale"]?.shape, [])

    let restored = try TinyNet(seed: 2)
    let adam2 = Adam(learningRate: 0.01)
    XCTAssertNotEqual(try parameterBits(restored), try parameterBits(model))
    let metadata = try Checkpoint.load(from: url, into: restored, optimizer: adam2)
    XCTAssertEqual(try parameterBits(restored), try parameterBits(model))
    XCTAssertEqual(adam2.step, 2)
    XCTAssertEqual(try stateBits(adam2), try stateBits(adam))
    XCTAssertEqual(metadata["model"], "tiny")
    XCTAssertEqual(metadata["config"], #"{"width":3}"#)
    XCTAssertEqual(metadata["epoch"], "4")
    XCTAssertEqual(metadata[Checkpoint.stepKey], "2")
    XCTAssertEqual(try Checkpoint.decode(RandomState.self, key: "rng", in: metadata), rng)

    // The resumed run continues exactly as the original.
    try step(model, adam, 0.2)
    try step(restored, adam2, 0.2)
    XCTAssertEqual(try parameterBits(restored), try parameterBits(model))

    // Weights only: optimiser state in the file is ignored.
    let weightsOnly = try TinyNet(seed: 3)
    try Checkpoint.load(from: url, into: weightsOnly)
    XCTAssertEqual(try weightsOnly.bias.value.toDoubles(), file.tensors["bias"]!.doubles)
  }

  /// Saves TinyNet(seed: 1) with an SGD state and returns the file.
  func savedTinyNet() throws -> URL {
    let model = try TinyNet(seed: 1)
    let sgd = SGD(learningRate: 0.1, momentum: 0.9)
    try step(model, sgd, 0.5)
    let url = try makeTemporaryDirectory().appendingPathComponent("tiny.safetensors")
    try Checkpoint.save(model: model, optimizer: sgd, to: url)
    return url
  }

  /// Loads `url` into `model`, expecting an error, and checks `model` was left untouched.
  func loadError(
    _ url: URL, into model: Module, optimizer: (any Optimizer)? = nil,
    file: StaticString = #filePath, line: UInt = #line
  ) throws -> CheckpointError? {
    let before = try parameterBits(model)
    let e = expectCheckpointError("load", file: file, line: line) {
      try Checkpoint.load(from: url, into: model, optimizer: optimizer)
    }
    XCTAssertEqual(
      try parameterBits(model), before, "modified by a failed load", file: file, line: line)
    return e
  }

  func testMismatchedModelsAreRejectedClearly() throws {
    let url = try savedTinyNet()
    var e = try loadError(url, into: RenamedNet(seed: 5))
    XCTAssertEqual(e, .missingTensors(file: "tiny.safetensors", names: ["offset"]))
    XCTAssertEqual(e?.description, "tiny.safetensors: missing tensors offset")

    e = try loadError(url, into: HeadlessNet(seed: 5))
    XCTAssertEqual(e, .unexpectedTensors(file: "tiny.safetensors", names: ["head.scale"]))

    e = try loadError(url, into: TinyNet(seed: 5, weightShape: [2, 3]))
    XCTAssertEqual(
      e,
      .mismatch(
        file: "tiny.safetensors", tensor: "weight",
        reason: "shape [3, 2] in the file, [2, 3] expected"))

    e = try loadError(url, into: TinyNet(seed: 5, biasDType: .float64))
    guard case .mismatch(_, "bias", let reason)? = e else {
      return XCTFail("\(String(describing: e))")
    }
    XCTAssertTrue(reason.contains("dtype"), reason)
  }

  func testOptimizerStateMustMatch() throws {
    let url = try savedTinyNet()
    // A weights-only checkpoint cannot restore an optimiser.
    let weights = try makeTemporaryDirectory().appendingPathComponent("weights.safetensors")
    try Checkpoint.save(model: TinyNet(seed: 1), to: weights)
    var e = try loadError(weights, into: TinyNet(seed: 2), optimizer: SGD(learningRate: 0.1))
    XCTAssertEqual(
      e,
      .invalidMetadata(
        file: "weights.safetensors", key: Checkpoint.stepKey,
        reason: "missing, so the file holds no optimizer state"))

    // State for a parameter the model lacks.
    var file = try SafeTensorsFile.read(from: url)
    file.tensors["optimizer.momentum_buffer.ghost"] = try HostTensor([Float(1)], shape: [1])
    try file.write(to: url)
    e = try loadError(url, into: TinyNet(seed: 2), optimizer: SGD(learningRate: 0.1))
    XCTAssertEqual(
      e, .unexpectedTensors(file: "tiny.safetensors", names: ["optimizer.momentum_buffer.ghost"]))
    // Without an optimiser the state is not looked at.
    XCTAssertNoThrow(try Checkpoint.load(from: url, into: TinyNet(seed: 2)))

    // State of the wrong shape, and a slot the optimiser does not have.
    file.tensors["optimizer.momentum_buffer.ghost"] = nil
    file.tensors["optimizer.momentum_buffer.weight"] = try HostTensor(
      [Float](repeating: 0, count: 6), shape: [6])
    try file.write(to: url)
    e = try loadError(url, into: TinyNet(seed: 2), optimizer: SGD(learningRate: 0.1))
    guard case .mismatch(_, "optimizer.momentum_buffer.weight", _)? = e else {
      return XCTFail("\(String(describing: e))")
    }
    // Well-shaped state for slots Adam does not have.
    file.tensors["optimizer.momentum_buffer.weight"] = try HostTensor(
      [Float](repeating: 0, count: 6), shape: [3, 2])
    try file.write(to: url)
    e = try loadError(url, into: TinyNet(seed: 2), optimizer: Adam())
    guard case .mismatch(_, "optimizer state", _)? = e else {
      return XCTFail("\(String(describing: e))")
    }
  }

  func testOverwritingLeavesNoTemporaryFiles() throws {
    let directory = try makeTemporaryDirectory()
    let url = directory.appendingPathComponent("ckpt.safetensors")
    for seed in 1...3 {
      let model = try TinyNet(seed: UInt64(seed))
      try Checkpoint.save(model: model, metadata: ["epoch": "\(seed)"], to: url)
      XCTAssertEqual(try listing(directory), ["ckpt.safetensors"])
      let restored = try TinyNet(seed: 99)
      XCTAssertEqual(try Checkpoint.load(from: url, into: restored)["epoch"], "\(seed)")
      XCTAssertEqual(try parameterBits(restored), try parameterBits(model))
    }
    // The new file has the usual permissions, not a temporary file's 0600.
    let mode = try FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? Int
    XCTAssertEqual(mode.map { $0 & 0o044 }, 0o044 & ~Int(currentUmask()))
  }

  #if canImport(Glibc)
    func testFailedWriteLeavesTheOldFileIntact() throws {
      let directory = try makeTemporaryDirectory()
      let url = directory.appendingPathComponent("ckpt.safetensors")
      try SafeTensorsFile(tensors: ["a": try HostTensor([Float(1), 2, 3], shape: [3])]).write(
        to: url)
      let old = try Data(contentsOf: url)
      let big = SafeTensorsFile(
        tensors: ["big": try HostTensor([Float](repeating: 7, count: 1 << 18), shape: [1 << 18])])

      // A file-size limit makes the write fail midway, even as root (which permissions would
      // not stop). SIGXFSZ is ignored so that write() returns EFBIG instead of killing us.
      let resource = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
      var saved = rlimit()
      XCTAssertEqual(getrlimit(resource, &saved), 0)
      let handler = signal(SIGXFSZ, SIG_IGN)
      var limited = saved
      limited.rlim_cur = 64 * 1024
      XCTAssertEqual(setrlimit(resource, &limited), 0)
      let e = expectCheckpointError("write over the size limit") { try big.write(to: url) }
      setrlimit(resource, &saved)
      signal(SIGXFSZ, handler)

      guard case .io(let file, let reason)? = e else { return XCTFail("\(String(describing: e))") }
      XCTAssertEqual(file, "ckpt.safetensors")
      XCTAssertTrue(reason.contains("cannot write"), reason)
      XCTAssertEqual(try Data(contentsOf: url), old)
      XCTAssertEqual(try listing(directory), ["ckpt.safetensors"])

      // With the limit lifted the same write succeeds.
      try big.write(to: url)
      XCTAssertEqual(try SafeTensorsFile.read(from: url), big)
      XCTAssertEqual(try listing(directory), ["ckpt.safetensors"])
    }
  #endif

  func testWriteIntoAMissingDirectoryFails() throws {
    let url = try makeTemporaryDirectory().appendingPathComponent("no/such/dir/x.safetensors")
    let e = expectCheckpointError("missing directory") { try SafeTensorsFile().write(to: url) }
    guard case .io("x.safetensors", _)? = e else { return XCTFail("\(String(describing: e))") }
  }
}

/// The process's umask (read by setting and restoring it).
private func currentUmask() -> mode_t {
  let mask = umask(0o022)
  umask(mask)
  return mask
}
