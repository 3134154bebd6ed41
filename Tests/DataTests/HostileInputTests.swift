import DiffEqNet
import Foundation
import XCTest

/// Inputs crafted to trap, hang or exhaust memory in the readers and allocators: each must be a
/// clear error naming the cap or the defect.
final class HostileInputTests: XCTestCase {
  /// A safetensors file whose header is `json`.
  func safetensors(_ json: String) -> [UInt8] {
    let header = Array(json.utf8)
    let length = UInt64(header.count)
    return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) } + header
  }

  func testAShapeOfMillionsOfZeroDimensionsIsRefused() throws {
    let dims = Array(repeating: "0", count: 1_000_000).joined(separator: ",")
    let bytes = safetensors(#"{"w":{"dtype":"F32","shape":[\#(dims)],"data_offsets":[0,0]}}"#)
    XCTAssertThrowsError(try SafeTensorsFile(bytes: bytes, file: "zeros.safetensors")) {
      XCTAssertTrue("\($0)".contains("more than 64 elements"), "\($0)")
    }
  }

  func testDevicesAndFIFOsAreNotReadAsCheckpoints() throws {
    for path in ["/dev/zero", "/dev/urandom"] {
      XCTAssertThrowsError(try SafeTensorsFile.read(from: URL(fileURLWithPath: path))) {
        XCTAssertTrue("\($0)".contains("not a regular file"), "\(path): \($0)")
      }
      XCTAssertThrowsError(try SafeTensorsFile.readMetadata(from: URL(fileURLWithPath: path)))
    }
    let fifo = try makeTemporaryDirectory().appendingPathComponent("fifo.safetensors")
    XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
    XCTAssertThrowsError(try SafeTensorsFile.read(from: fifo)) {
      XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)")
    }
  }

  /// The metadata of a checkpoint is read from its header alone, and equals the full read's.
  func testMetadataComesFromTheHeaderAlone() throws {
    let url = try makeTemporaryDirectory().appendingPathComponent("m.safetensors")
    let file = SafeTensorsFile(
      tensors: ["w": try HostTensor([1, 2, 3], shape: [3])], metadata: ["epoch": "7"])
    try file.write(to: url)
    XCTAssertEqual(try SafeTensorsFile.readMetadata(from: url), ["epoch": "7"])
    // A header that promises more than the file holds is still refused.
    var bytes = try file.serialized()
    bytes.removeLast(bytes.count - 10)
    let cut = url.deletingLastPathComponent().appendingPathComponent("cut.safetensors")
    try write(bytes, to: cut)
    XCTAssertThrowsError(try SafeTensorsFile.readMetadata(from: cut))
  }

  /// A gzip file of about 100 KB whose IDX header declares one 28×28 image but that inflates to
  /// 100 MB is refused once the header is inflated, not after inflating it all.
  func testACompressedFileCannotInflateBeyondWhatItsHeaderDeclares() throws {
    var raw: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]
    raw += [UInt8](repeating: 0, count: 100 << 20)
    let url = try makeTemporaryDirectory().appendingPathComponent("bomb-idx3-ubyte.gz")
    try write(try Gzip.compress(raw, level: 9), to: url)
    XCTAssertThrowsError(try IDXReader.readImages(at: url)) {
      XCTAssertTrue("\($0)".contains("more than the 800 bytes its header declares"), "\($0)")
    }
  }

  func testSizesThatOverflowAreErrorsNotTraps() throws {
    let huge = 1 << 40
    XCTAssertThrowsError(try Tensor.zeros([huge, huge], on: cpu)) {
      XCTAssertTrue("\($0)".contains("more than Int.max elements"), "\($0)")
    }
    XCTAssertThrowsError(try Tensor.zeros([1 << 61], on: cpu)) {
      guard case BackendError.allocationTooLarge = $0 else { return XCTFail("\($0)") }
    }
    var rng = RandomState(seed: 0)
    XCTAssertThrowsError(try Tensor.normal([1 << 33], rng: &rng, on: cpu))
    XCTAssertThrowsError(try Linear(1 << 31, 1 << 31, rng: &rng, on: cpu))
    XCTAssertThrowsError(try Conv2d(1 << 40, 1 << 40, kernelSize: 1 << 20, rng: &rng, on: cpu))
  }

  func testABatchSizeNearIntMaxIsOneBatch() throws {
    let data = try ImageDataset(
      name: "t", images: [UInt8](repeating: 0, count: 3 * 4), labels: [0, 1, 2], channels: 1,
      height: 2, width: 2, classes: 3)
    let loader = try BatchLoader(
      data, batchSize: Int.max, normalization: .identity, shuffle: false, seed: 0)
    XCTAssertEqual(loader.batchesPerEpoch, 1)
  }

  func testAnOptimizerStepNearIntMaxIsRefused() throws {
    for step in [Int.max, SGD.maxStep + 1, -1] {
      XCTAssertThrowsError(try SGD(learningRate: 0.1).loadState([:], step: step)) {
        XCTAssertTrue("\($0)".contains("outside"), "\($0)")
      }
    }
    XCTAssertNoThrow(try SGD(learningRate: 0.1).loadState([:], step: SGD.maxStep))
  }

  func testFixedStepCountsBeyondMaxStepsAreErrors() throws {
    let y0 = try Tensor([1], shape: [1], dtype: .float64, on: cpu)
    let f = VectorField { _, y in y }
    XCTAssertThrowsError(try odeint(f, y0, times: [0, 1], options: .fixed(.rk4, steps: Int.max)))
    var options = ODEOptions(solver: .euler)
    options.stepSize = 1e-300
    XCTAssertThrowsError(try odeint(f, y0, times: [0, 1], options: options)) {
      XCTAssertTrue("\($0)".contains("maximum of"), "\($0)")
    }
  }
}
