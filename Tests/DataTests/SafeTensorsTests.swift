import DiffEqNet
import Foundation
import XCTest

/// A safetensors file built byte by byte: little-endian `length` (default: the header's), the
/// header, the data.
func handMade(_ header: String, data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
  let h = Array(header.utf8)
  return withUnsafeBytes(of: (length ?? UInt64(h.count)).littleEndian) { Array($0) } + h + data
}

func littleEndian(_ x: Float) -> [UInt8] {
  withUnsafeBytes(of: x.bitPattern.littleEndian) { Array($0) }
}
func littleEndian(_ x: Double) -> [UInt8] {
  withUnsafeBytes(of: x.bitPattern.littleEndian) { Array($0) }
}

/// Writing and reading safetensors files: round trips and the exact byte layout of the format.
final class SafeTensorsTests: XCTestCase {
  /// Tensors of both types and awkward shapes, with special values.
  func sampleFile() throws -> SafeTensorsFile {
    var rng = RandomState(seed: 3)
    func values(_ n: Int) -> [Double] { (0..<n).map { _ in rng.nextNormal() } }
    let special: [Double] = [.nan, -0.0, .infinity, -.infinity, .leastNonzeroMagnitude, 1e300]
    return SafeTensorsFile(
      tensors: [
        "conv.weight": try HostTensor(values(3 * 5 * 7), shape: [3, 5, 7], dtype: .float32),
        "blocks.0.norm.gamma": try HostTensor(values(7), shape: [7], dtype: .float64),
        "scalar32": try HostTensor([Float(2.5)], shape: []),
        "scalar64": try HostTensor([-1.25], shape: [], dtype: .float64),
        "empty": try HostTensor([Float](), shape: [0]),
        "empty.inner": try HostTensor([], shape: [2, 0, 3], dtype: .float64),
        "special": try HostTensor(special, shape: [2, 3], dtype: .float64),
        "special32": try HostTensor(special, shape: [1, 6, 1], dtype: .float32),
        "ünïcode name \"quoted\"\n": try HostTensor([Float(1)], shape: [1, 1, 1, 1]),
      ],
      metadata: [
        "model": "ode-mnist", "config": #"{"width":64,"tol":1e-3}"#, "epoch": "12",
        "weird": "tab\there \\ \u{1} é 😀", "": "empty key",
      ])
  }

  func testRoundTripThroughAFile() throws {
    let file = try sampleFile()
    let url = try makeTemporaryDirectory().appendingPathComponent("model.safetensors")
    try file.write(to: url)
    let back = try SafeTensorsFile.read(from: url)
    XCTAssertEqual(back, file)  // bytes compared: NaN payloads and -0 survive
    XCTAssertEqual(back.tensors["scalar64"]?.doubles, [-1.25])
    XCTAssertEqual(back.tensors["empty.inner"]?.shape, [2, 0, 3])
    XCTAssertEqual(back.tensors["special"]?.doubles[1].sign, .minus)
    XCTAssertTrue(back.tensors["special32"]?.floats[0].isNaN ?? false)
    XCTAssertEqual(back.metadata, file.metadata)
    // Writing is deterministic.
    XCTAssertEqual(try back.serialized(), try file.serialized())
    XCTAssertEqual([UInt8](try Data(contentsOf: url)), try file.serialized())
  }

  func testTensorConversions() throws {
    var rng = RandomState(seed: 1)
    for dtype in DType.allCases {
      for shape in [[], [0], [3, 1, 4], [2, 0]] {
        let t = try Tensor.normal(shape, dtype: dtype, rng: &rng, on: cpu)
        let host = try HostTensor(t)
        XCTAssertEqual(host.dtype, dtype)
        XCTAssertEqual(host.shape, shape)
        XCTAssertEqual(host.bytes.count, t.count * dtype.size)
        let back = try host.tensor(on: cpu)
        XCTAssertEqual(back.shape, shape)
        XCTAssertEqual(back.dtype, dtype)
        XCTAssertEqual(try back.toDoubles(), try t.toDoubles())
      }
    }
    XCTAssertThrowsError(try HostTensor(dtype: .float32, shape: [2], bytes: [0, 0, 0, 0]))
    XCTAssertThrowsError(try HostTensor([1, 2, 3], shape: [2]))
    XCTAssertThrowsError(try HostTensor([Float](), shape: [-1]))
  }

  func testHeaderLayoutMatchesTheSpecification() throws {
    let file = SafeTensorsFile(
      tensors: [
        "a": try HostTensor([Float(1), -2], shape: [2]),
        "b": try HostTensor([0.5], shape: [], dtype: .float64),
        "c": try HostTensor([Float](), shape: [0, 3]),
      ],
      metadata: ["m": "x\"y"])
    // Written out by hand from the format description: metadata first; 8-byte elements before
    // 4-byte ones, then by name; offsets contiguous from 0; compact JSON padded with spaces.
    let json =
      #"{"__metadata__":{"m":"x\"y"},"b":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"#
      + #""a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"#
      + #""c":{"dtype":"F32","shape":[0,3],"data_offsets":[16,16]}}"#
    let padded = json + String(repeating: " ", count: (8 - json.utf8.count % 8) % 8)
    XCTAssertEqual(padded.utf8.count % 8, 0)
    let expected: [UInt8] =
      [UInt8(padded.utf8.count), 0, 0, 0, 0, 0, 0, 0] + Array(padded.utf8)
      + [0, 0, 0, 0, 0, 0, 0xE0, 0x3F]  // 0.5 as a little-endian double
      + [0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0]  // 1.0f, -2.0f
    XCTAssertLessThan(padded.utf8.count, 256)
    XCTAssertEqual(try file.serialized(), expected)
    XCTAssertEqual(try SafeTensorsFile(bytes: expected), file)
  }

  func testReadsHeadersWrittenDifferently() throws {
    // Another writer may order keys differently, use whitespace and escapes, put metadata last
    // and pad with other whitespace; the data order is whatever the offsets say.
    let header = """
      {
        "w" : { "data_offsets" : [4, 12], "shape": [2], "dtype": "F32" },
        "\\u0076" : {"dtype":"F32","shape":[1],"data_offsets":[0,4]},
        "__metadata__": {"note": "caf\\u00e9 \\ud83d\\ude00\\/"}
      }\t\n
      """
    let data = littleEndian(Float(3)) + littleEndian(Float(1)) + littleEndian(Float(2))
    let file = try SafeTensorsFile(bytes: handMade(header, data: data))
    XCTAssertEqual(file.tensors["v"]?.floats, [3])
    XCTAssertEqual(file.tensors["w"]?.floats, [1, 2])
    XCTAssertEqual(file.metadata, ["note": "café 😀/"])
    // No tensors at all is a valid file.
    XCTAssertEqual(try SafeTensorsFile(bytes: handMade("{}      ")), SafeTensorsFile())
  }

  func testWriterRejectsTheReservedName() throws {
    let file = SafeTensorsFile(tensors: ["__metadata__": try HostTensor([Float(1)], shape: [1])])
    expectCheckpointError("reserved name") { _ = try file.serialized() }
  }
}
