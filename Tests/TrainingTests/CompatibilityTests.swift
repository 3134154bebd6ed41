import DiffEqNet
import Foundation
import XCTest

/// What older runs and torchdiffeq wrote still loads and computes what it computed there:
/// `Tests/Fixtures/main-v1` (a run of checkpoint format 1) and `Tests/Fixtures/torchdiffeq-odenet`
/// (a width-8 ODE-Net made with PyTorch and torchdiffeq by scripts/make-torchdiffeq-fixture.py).
final class CompatibilityTests: XCTestCase {
  static let fixtures = TrainingTests.root.appendingPathComponent("Tests/Fixtures")
  let cpu = CPUBackend()

  /// Logits of `model` in evaluation mode for `images`.
  func logits(_ model: ImageClassifier, _ images: Tensor) throws -> [Double] {
    model.train(false)
    defer { model.train(true) }
    return try model(images).toDoubles()
  }

  func maxDifference(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
  }

  // MARK: Format 1

  /// The v1 trainer: its configuration, read from its checkpoint, over the bundled data.
  func formatOneTrainer() throws -> (Trainer<ImageClassificationTask>, URL) {
    let url = Self.fixtures.appendingPathComponent("main-v1/checkpoint.safetensors")
    let metadata = try SafeTensorsFile.read(from: url).metadata
    var c = try Checkpoint.decode(TrainingConfiguration.self, key: "config", in: metadata)
    XCTAssertEqual(c.gradient, .backsolve, "format 1 spelled it 'adjoint'")
    c.data = TrainingTests.root.appendingPathComponent("data/mnist-5k").path
    let (train, test) = try c.loadData()
    return (try Trainer(c, backend: cpu, train: train, test: test), url)
  }

  /// The first test batch (128 images) as the v1 run normalised it, and the logits that run
  /// computed for its first 16 images. The whole batch is solved: dopri5's error norm, and so its
  /// steps, depend on every image in it.
  func formatOneInputs(_ trainer: Trainer<ImageClassificationTask>) throws -> (Tensor, [Double]) {
    var batches = Prefetcher(trainer.task.testLoader, epoch: 0).makeIterator()
    let batch = try XCTUnwrap(batches.next())
    let (images, _) = try batch.tensors(on: cpu)
    let text = try String(
      contentsOf: Self.fixtures.appendingPathComponent("main-v1/logits.csv"), encoding: .utf8)
    let expected = text.split(separator: "\n").flatMap {
      $0.split(separator: ",").map { Double($0)! }
    }
    return (images, expected)
  }

  /// A format-1 checkpoint loads (its ConcatConv2d weights and their momentum buffers turned to
  /// time-channel-first), reproduces the logits that run computed, and resumes where it stopped.
  func testFormatOneCheckpointLoadsAndComputesWhatItDid() throws {
    let (trainer, url) = try formatOneTrainer()
    try trainer.loadCheckpoint(from: url)
    XCTAssertEqual(trainer.epoch, 2)
    XCTAssertEqual(trainer.batch, 0)
    XCTAssertEqual(trainer.optimizer.step, 16)
    let (images, expected) = try formatOneInputs(trainer)
    let e = maxDifference(Array(try logits(trainer.task.classifier, images)[..<160]), expected)
    XCTAssertLessThan(e, 1e-4, "format-1 logits reproduced to \(e)")

    // Without the conversion the same weights compute something else: the test can fail.
    let (raw, _) = try formatOneTrainer()
    try Checkpoint.load(from: url, into: raw.model)
    let unconverted = maxDifference(
      Array(try logits(raw.task.classifier, images)[..<160]), expected)
    XCTAssertGreaterThan(unconverted, 1e-2, "the time channel's position must matter")

    // Training goes on from the restored state.
    var c = trainer.configuration
    c.epochs = 3
    let (train, test) = try c.loadData()
    let resumed = try Trainer(c, backend: cpu, train: train, test: test)
    try resumed.loadCheckpoint(from: url)
    let m = try XCTUnwrap(try resumed.trainEpoch { _ in })
    XCTAssertEqual(m.epoch, 3)
    XCTAssertTrue(m.trainLoss.isFinite)
  }

  /// The config.json a format-1 run wrote decodes into today's typed settings.
  func testFormatOneConfigJSONDecodes() throws {
    let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("main-v1/config.json"))
    let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let settings = try JSONSerialization.data(withJSONObject: object["configuration"]!)
    let c = try JSONDecoder().decode(TrainingConfiguration.self, from: settings)
    XCTAssertEqual(c.model, .odenet)
    XCTAssertEqual(c.solver, .dopri5)
    XCTAssertEqual(c.gradient, .backsolve)
    XCTAssertEqual(c.device, .cpu)
    XCTAssertEqual(c.format, .mnist)
    XCTAssertEqual(c.optimizer, .sgd)
    XCTAssertEqual(c.schedule, .cosine)
    XCTAssertEqual(c.width, 8)
    XCTAssertNil(c.normalization)
    // Written back, the gradient takes its new spelling; everything reads back equal.
    let encoded = try JSONEncoder().encode(c)
    XCTAssertTrue(String(decoding: encoded, as: UTF8.self).contains(#""gradient":"backsolve""#))
    XCTAssertEqual(try JSONDecoder().decode(TrainingConfiguration.self, from: encoded), c)
  }

  /// Unknown or future formats are refused before anything is loaded.
  func testUnknownFormatsAreRefusedUntouched() throws {
    let (trainer, url) = try formatOneTrainer()
    var file = try SafeTensorsFile.read(from: url)
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diffeqnet-fmt-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let before = try trainer.model.namedParameters().map { try $0.parameter.value.toDoubles() }
    for (value, message) in [("diffeqnet-checkpoint-3", "newer"), ("other", "not a DiffEqNet")] {
      file.metadata["format"] = value
      let bad = dir.appendingPathComponent("bad.safetensors")
      try file.write(to: bad)
      XCTAssertThrowsError(try trainer.loadCheckpoint(from: bad)) {
        XCTAssertTrue("\($0)".contains(message), "\($0)")
      }
    }
    XCTAssertEqual(
      try trainer.model.namedParameters().map { try $0.parameter.value.toDoubles() }, before)
    XCTAssertEqual(trainer.epoch, 0)
  }

  // MARK: torchdiffeq

  /// The fixture's images and torchdiffeq's logits for them.
  func torchdiffeqExpected() throws -> SafeTensorsFile {
    try SafeTensorsFile.read(
      from: Self.fixtures.appendingPathComponent("torchdiffeq-odenet/expected.safetensors"))
  }

  /// A model read from a checkpoint that `runner import` wrote, solved by `solver` in 4 steps.
  func importedModel(_ checkpoint: URL, solver: ODESolver) throws -> ImageClassifier {
    let metadata = try SafeTensorsFile.read(from: checkpoint).metadata
    var c = try Checkpoint.decode(TrainingConfiguration.self, key: "config", in: metadata)
    XCTAssertEqual(c.normalization, .identity, "torchdiffeq's model takes raw pixels")
    c.solver = solver
    c.data = TrainingTests.root.appendingPathComponent("data/mnist-5k").path
    c.limit = 16
    let (train, test) = try c.loadData()
    let trainer = try Trainer(c, backend: cpu, train: train, test: test)
    try trainer.loadCheckpoint(from: checkpoint)
    return trainer.task.classifier
  }

  /// `runner import` of torchdiffeq's width-8 ODE-Net reproduces torchdiffeq's logits (its
  /// `rk4`, the 3/8 rule, 4 steps) to 1e-4; `runner export` gives back its state_dict exactly.
  func testTorchdiffeqModelImportsAndExportsExactly() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diffeqnet-td-\(UUID())")
    defer { try? FileManager.default.removeItem(at: dir) }
    let weights = Self.fixtures.appendingPathComponent("torchdiffeq-odenet/weights.safetensors")
    let (status, output) = try TrainingTests.runner([
      "import", "--torchdiffeq", weights.path, "--out", dir.path, "--solver", "rk38",
      "--rk-steps", "4", "--device", "cpu",
    ])
    XCTAssertEqual(status, 0, output)
    let checkpoint = dir.appendingPathComponent("checkpoint.safetensors")

    let expected = try torchdiffeqExpected()
    let images = try XCTUnwrap(expected.tensors["images"]).tensor(on: cpu)
    let model = try importedModel(checkpoint, solver: .rk38)
    let e = maxDifference(
      try logits(model, images), try XCTUnwrap(expected.tensors["logits"]).doubles)
    XCTAssertLessThan(e, 1e-4, "torchdiffeq's logits reproduced to \(e)")
    // Classic RK4 matches its own reference and not the 3/8 rule's: the check tells them apart.
    let classic = try logits(try importedModel(checkpoint, solver: .rk4), images)
    let eClassic = maxDifference(
      classic, try XCTUnwrap(expected.tensors["logits_classic_rk4"]).doubles)
    XCTAssertLessThan(eClassic, 1e-4, "classic RK4 to \(eClassic)")
    XCTAssertGreaterThan(maxDifference(classic, expected.tensors["logits"]!.doubles), 1e-4)

    let exported = dir.appendingPathComponent("export.safetensors")
    let (status2, output2) = try TrainingTests.runner([
      "export", "--checkpoint", checkpoint.path, "--torchdiffeq", exported.path,
    ])
    XCTAssertEqual(status2, 0, output2)
    let original = try SafeTensorsFile.read(from: weights)
    let roundTrip = try SafeTensorsFile.read(from: exported)
    XCTAssertEqual(
      Set(roundTrip.tensors.keys), Set(original.tensors.keys),
      "the export must hold exactly the state_dict's keys (load_state_dict(strict=True))")
    for (key, tensor) in original.tensors {
      XCTAssertEqual(roundTrip.tensors[key], tensor, "\(key) changed on the way through")
    }
  }

  /// The export folds our input normalisation into the first convolution: the exported model,
  /// fed raw pixels, computes what ours computes on standardised ones.
  func testExportFoldsTheNormalisation() throws {
    var c = TrainingConfiguration()
    c.width = 8
    c.normGroups = 8
    c.solver = .rk4
    var model = try ModelZoo.make(.odenet, c.modelConfiguration(channels: 1, classes: 10), on: cpu)
    var rng = RandomState(seed: 4)
    let raw = try Tensor.uniform([5, 1, 28, 28], rng: &rng, on: cpu)
    let mnist = Normalization.mnist
    let standardised = try (raw - mnist.mean[0]) * (1 / mnist.std[0])
    let ours = try logits(model, standardised)
    let stateDict = try TorchdiffeqODENet.stateDict(of: model, normalization: mnist)
    model = try ModelZoo.make(.odenet, c.modelConfiguration(channels: 1, classes: 10), on: cpu)
    try TorchdiffeqODENet.load(stateDict, into: model, file: "export")
    let e = maxDifference(try logits(model, raw), ours)
    XCTAssertLessThan(e, 1e-5, "folded normalisation to \(e)")

    // A model with other GroupNorm groups than torchdiffeq's is refused, not silently changed.
    c.normGroups = nil
    let other = try ModelZoo.make(.odenet, c.modelConfiguration(channels: 1, classes: 10), on: cpu)
    XCTAssertThrowsError(try TorchdiffeqODENet.stateDict(of: other, normalization: mnist)) {
      XCTAssertTrue("\($0)".contains("groups"), "\($0)")
    }
  }

  /// Every one of our ODE-Net's parameters has its own torchdiffeq key.
  func testNameMapIsOneToOne() throws {
    var c = TrainingConfiguration()
    c.width = 8
    let model = try ModelZoo.make(.odenet, c.modelConfiguration(channels: 1, classes: 10), on: cpu)
    let keys = model.namedParameters().map { TorchdiffeqODENet.stateDictKey($0.name) }
    XCTAssertFalse(keys.contains(nil))
    XCTAssertEqual(Set(keys.compactMap { $0 }).count, keys.count)
    XCTAssertEqual(
      TorchdiffeqODENet.stateDictKey("features.0.function.conv1.conv.weight"),
      "7.odefunc.conv1._layer.weight")
    XCTAssertEqual(TorchdiffeqODENet.stateDictKey("stemNorm1.gamma"), "4.weight")
  }
}
