import DiffEqNet
import Foundation
import XCTest

/// The CPU backend shared by these tests.
let cpu = CPUBackend()

/// The repository root, found from this file's path so tests run from any working directory.
let repositoryRoot = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

extension XCTestCase {
  /// A fresh empty directory, removed when the test ends.
  func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
      .appendingPathComponent("DataTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
  }
}

func write(_ bytes: [UInt8], to url: URL) throws {
  try Data(bytes).write(to: url)
}

/// The names in `directory`, sorted.
func listing(_ directory: URL) throws -> [String] {
  try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
}

// MARK: - Expected errors

/// The `DatasetError` that `body` throws; a test failure if it returns or throws something else.
@discardableResult
func expectDatasetError(
  _ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
) -> DatasetError? {
  do {
    try body()
    XCTFail("\(what): no error thrown", file: file, line: line)
  } catch let error as DatasetError {
    return error
  } catch {
    XCTFail(
      "\(what): expected a DatasetError, got \(type(of: error)): \(error)", file: file, line: line)
  }
  return nil
}

/// The `CheckpointError` that `body` throws; a test failure if it returns or throws something else.
@discardableResult
func expectCheckpointError(
  _ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
) -> CheckpointError? {
  do {
    try body()
    XCTFail("\(what): no error thrown", file: file, line: line)
  } catch let error as CheckpointError {
    return error
  } catch {
    XCTFail(
      "\(what): expected a CheckpointError, got \(type(of: error)): \(error)", file: file,
      line: line)
  }
  return nil
}

// MARK: - IDX and CIFAR files written by hand

func bigEndian(_ x: UInt32) -> [UInt8] {
  [UInt8(x >> 24), UInt8(x >> 16 & 0xff), UInt8(x >> 8 & 0xff), UInt8(x & 0xff)]
}

/// An IDX3 images file (magic 0x00000803 unless overridden).
func idxImages(
  count: Int, height: Int, width: Int, pixels: [UInt8], magic: UInt32 = 0x0000_0803
) -> [UInt8] {
  bigEndian(magic) + bigEndian(UInt32(count)) + bigEndian(UInt32(height))
    + bigEndian(UInt32(width)) + pixels
}

/// An IDX1 labels file (magic 0x00000801 unless overridden).
func idxLabels(_ labels: [UInt8], count: Int? = nil, magic: UInt32 = 0x0000_0801) -> [UInt8] {
  bigEndian(magic) + bigEndian(UInt32(count ?? labels.count)) + labels
}

/// Deterministic pixel values for test images.
func testPixels(_ n: Int, seed: UInt64) -> [UInt8] {
  var rng = RandomState(seed: seed)
  return (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

/// CIFAR records: per image, the label bytes then 3072 pixels.
func cifarRecords(labels: [[UInt8]], seed: UInt64) -> (file: [UInt8], pixels: [UInt8]) {
  var file: [UInt8] = []
  var pixels: [UInt8] = []
  for (i, label) in labels.enumerated() {
    let image = testPixels(3072, seed: seed &+ UInt64(i))
    file += label + image
    pixels += image
  }
  return (file, pixels)
}

// MARK: - A small model for checkpoints

final class Head: Module {
  let scale: Parameter

  init(seed: UInt64) throws {
    var rng = RandomState(seed: seed)
    scale = Parameter(try Tensor.normal([], dtype: .float64, rng: &rng, on: cpu))
  }
}

/// Trainable float32 weights, a non-trainable statistic and a float64 scalar in a submodule.
final class TinyNet: Module {
  let weight: Parameter
  let bias: Parameter
  let runningMean: Parameter
  let head: Head

  init(seed: UInt64, weightShape: [Int] = [3, 2], biasDType: DType = .float32) throws {
    var rng = RandomState(seed: seed)
    weight = Parameter(try Tensor.normal(weightShape, rng: &rng, on: cpu))
    bias = Parameter(try Tensor.normal([3], dtype: biasDType, rng: &rng, on: cpu))
    runningMean = Parameter(try Tensor.normal([3], rng: &rng, on: cpu), trainable: false)
    head = try Head(seed: seed &+ 1)
  }
}

/// TinyNet with `bias` renamed to `offset`.
final class RenamedNet: Module {
  let weight: Parameter
  let offset: Parameter
  let runningMean: Parameter
  let head: Head

  init(seed: UInt64) throws {
    var rng = RandomState(seed: seed)
    weight = Parameter(try Tensor.normal([3, 2], rng: &rng, on: cpu))
    offset = Parameter(try Tensor.normal([3], rng: &rng, on: cpu))
    runningMean = Parameter(try Tensor.normal([3], rng: &rng, on: cpu), trainable: false)
    head = try Head(seed: seed &+ 1)
  }
}

/// TinyNet without its `head`.
final class HeadlessNet: Module {
  let weight: Parameter
  let bias: Parameter
  let runningMean: Parameter

  init(seed: UInt64) throws {
    var rng = RandomState(seed: seed)
    weight = Parameter(try Tensor.normal([3, 2], rng: &rng, on: cpu))
    bias = Parameter(try Tensor.normal([3], rng: &rng, on: cpu))
    runningMean = Parameter(try Tensor.normal([3], rng: &rng, on: cpu), trainable: false)
  }
}

/// Every parameter's values by name, as bit patterns (so NaNs and signed zeros compare exactly).
func parameterBits(_ model: Module) throws -> [String: [UInt64]] {
  var out: [String: [UInt64]] = [:]
  for (name, p) in model.namedParameters() {
    out[name] = try p.value.toDoubles().map(\.bitPattern)
  }
  return out
}
