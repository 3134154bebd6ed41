import DiffEqNet
import Foundation
import XCTest

/// Malformed safetensors input: every case throws `CheckpointError` naming the file, none traps.
final class SafeTensorsRejectionTests: XCTestCase {
  let fileName = "bad.safetensors"

  /// A valid file: F64 `a` [2] at 0..<16, F32 `b` [3] at 16..<28.
  func valid() throws -> [UInt8] {
    try SafeTensorsFile(
      tensors: [
        "a": try HostTensor([1, 2], shape: [2], dtype: .float64),
        "b": try HostTensor([Float(3), 4, 5], shape: [3]),
      ],
      metadata: ["k": "v"]
    ).serialized()
  }

  @discardableResult
  func rejection(
    _ what: String, _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line
  ) -> CheckpointError? {
    let e = expectCheckpointError(what, file: file, line: line) {
      _ = try SafeTensorsFile(bytes: bytes, file: self.fileName)
    }
    if let e {
      XCTAssertTrue(e.description.hasPrefix(fileName + ": "), e.description, file: file, line: line)
    }
    return e
  }

  /// A header with one F32 tensor entry (as JSON text) and `data`.
  func oneTensor(_ entry: String, data: [UInt8] = [UInt8](repeating: 0, count: 8)) -> [UInt8] {
    handMade(#"{"t":"# + entry + "}", data: data)
  }

  /// A header of F32 entries (name, shape, begin, end).
  func header(_ entries: (String, [Int], Int, Int)...) -> String {
    let members = entries.map { name, shape, begin, end in
      #""\#(name)":{"dtype":"F32","shape":\#(shape),"data_offsets":[\#(begin),\#(end)]}"#
    }
    return "{" + members.joined(separator: ",") + "}"
  }

  func testTruncatedFiles() throws {
    let bytes = try valid()
    let headerEnd = bytes.count - 28
    for cut in [
      0, 1, 7, 8, 9, headerEnd / 2, headerEnd - 1, headerEnd, headerEnd + 5, bytes.count - 1,
    ] {
      let e = rejection("cut at \(cut)", Array(bytes.prefix(cut)))
      guard case .truncated(_, let size, let needed, _)? = e else {
        XCTFail("cut at \(cut): \(String(describing: e))")
        continue
      }
      XCTAssertEqual(size, cut)
      XCTAssertEqual(needed, cut < 8 ? 8 : cut < headerEnd ? headerEnd : bytes.count)
    }
    XCTAssertNoThrow(try SafeTensorsFile(bytes: bytes))
  }

  func testHeaderLengthBeyondTheFileOrTheLimit() throws {
    let body = Array(header(("a", [], 0, 4)).utf8) + [0, 0, 0, 0]
    let e = rejection("length past the end", handMade("", data: body, length: 1000))
    XCTAssertEqual(
      e,
      .truncated(file: fileName, size: 8 + body.count, needed: 1008, what: "a header of 1000 bytes")
    )
    for length in [UInt64(100_000_001), UInt64.max, UInt64(1) << 63] {
      guard
        case .notSafeTensors? = rejection(
          "length \(length)", handMade("", data: body, length: length))
      else { return XCTFail("length \(length)") }
    }
  }

  func testNonJSONHeaders() {
    for header in [
      "{abc}   ", "{\"a\":}  ", "{\"a\":1,}", "{} trailing", "{\"a\"", "{\"\\x\":1}",
      "{\"\\ud800\":1}",
      "{\"a\":01}", "{\"a\":1.}", "{\"a\":\"\u{1}\"}",
      "{\"a\":[" + String(repeating: "[", count: 500),
      "[1, 2, 3]", "  {}    ", "", "\"str\"", "null    ",
    ] {
      guard case .notSafeTensors? = rejection(header, handMade(header)) else {
        XCTFail("\(header.debugDescription) not reported as foreign")
        continue
      }
    }
    // Invalid UTF-8 inside the header.
    let header = Array(#"{"\#u{7f}":1}"#.utf8).map { $0 == 0x7f ? 0xff : $0 }
    let invalid = handMade("", data: header, length: UInt64(header.count))
    guard case .notSafeTensors? = rejection("invalid UTF-8", invalid) else { return XCTFail() }
  }

  func testOffsetsOverlappingOutOfBoundsOrWithGaps() {
    let four = littleEndian(Float(1))
    let cases: [(String, String, [UInt8])] = [
      (
        "overlap",
        header(("a", [2], 0, 8), ("b", [1], 4, 8)),
        four + four
      ),
      (
        "duplicate range",
        header(("a", [1], 0, 4), ("b", [1], 0, 4)),
        four + four
      ),
      (
        "gap",
        header(("a", [1], 0, 4), ("b", [1], 8, 12)),
        four + four + four
      ),
      ("gap at start", header(("a", [1], 4, 8)), four + four),
      ("end before begin", header(("a", [0], 8, 4)), four + four),
      (
        "zero-size tensor inside another",
        header(("a", [2], 0, 8), ("b", [0], 4, 4)),
        four + four
      ),
    ]
    for (what, header, data) in cases {
      guard case .invalidOffsets? = rejection(what, handMade(header, data: data)) else {
        XCTFail(what)
        continue
      }
    }
    // Past the end of the data: the file is shorter than the header says.
    let past = handMade(
      header(("a", [4], 0, 16)), data: four + four)
    guard case .truncated? = rejection("out of bounds", past) else { return XCTFail() }
    let huge = handMade(
      header(("a", [1], 9_223_372_036_854_775_803, 9_223_372_036_854_775_807)),
      data: four)
    rejection("offsets near Int.max", huge)
    let enormous = handMade(
      header(("a", [2_305_843_009_213_693_951], 0, 9_223_372_036_854_775_804)),
      data: four)
    guard case .truncated? = rejection("a tensor of 2^63 bytes", enormous) else { return XCTFail() }
    // Bytes no tensor claims.
    let extra = handMade(
      header(("a", [1], 0, 4)), data: four + [0])
    guard case .invalidHeader? = rejection("unclaimed trailing bytes", extra) else {
      return XCTFail()
    }
  }

  func testBadEntries() {
    for dtype in ["F16", "BF16", "I64", "f32", "U8"] {
      let e = rejection(
        dtype, oneTensor(#"{"dtype":"\#(dtype)","shape":[2],"data_offsets":[0,8]}"#))
      XCTAssertEqual(e, .unsupportedDType(file: fileName, tensor: "t", dtype: dtype))
    }
    let mismatches = [
      #"{"dtype":"F32","shape":[3],"data_offsets":[0,8]}"#,
      #"{"dtype":"F64","shape":[2],"data_offsets":[0,8]}"#,
      #"{"dtype":"F32","shape":[],"data_offsets":[0,8]}"#,
      #"{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}"#,
    ]
    for entry in mismatches {
      guard case .invalidOffsets? = rejection(entry, oneTensor(entry)) else {
        XCTFail(entry)
        continue
      }
    }
    let malformed = [
      #"{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}"#,
      #"{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}"#,
      #"{"dtype":"F32","shape":[1e0, 2],"data_offsets":[0,8]}"#,
      #"{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,8]}"#,
      #"{"dtype":"F32","shape":2,"data_offsets":[0,8]}"#,
      #"{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}"#,
      #"{"dtype":"F32","shape":[2],"data_offsets":[0.0,8]}"#,
      #"{"dtype":"F32","shape":[2],"data_offsets":[-0,8]}"#,
      #"{"dtype":"F32","shape":[2]}"#,
      #"{"shape":[2],"data_offsets":[0,8]}"#,
      #"{"dtype":32,"shape":[2],"data_offsets":[0,8]}"#,
      #"{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}"#,
      #"[0, 8]"#,
      #""F32""#,
    ]
    for entry in malformed {
      guard case .invalidHeader? = rejection(entry, oneTensor(entry)) else {
        XCTFail(entry)
        continue
      }
    }
    for metadata in [#"{"k":1}"#, #"{"k":null}"#, #"["k"]"#, #"{"k":{"n":"v"}}"#] {
      let bytes = handMade(#"{"__metadata__":"# + metadata + "}")
      guard case .invalidHeader? = rejection(metadata, bytes) else {
        XCTFail(metadata)
        continue
      }
    }
    // Duplicate keys would silently drop a tensor.
    let duplicate = handMade(
      header(("t", [1], 0, 4), ("t", [1], 4, 8)),
      data: [UInt8](repeating: 0, count: 8))
    guard case .notSafeTensors? = rejection("duplicate key", duplicate) else { return XCTFail() }
  }

  func testRandomGarbageAndMutationsNeverTrap() throws {
    var rng = RandomState(seed: 2024)
    func byte() -> UInt8 { UInt8(truncatingIfNeeded: rng.next()) }
    for i in 0..<2000 {
      var bytes = (0..<Int(rng.next() % 300)).map { _ in byte() }
      // Give some a plausible header length so parsing gets past the prefix.
      if i % 2 == 0 && bytes.count >= 8 {
        let length = UInt64(rng.next() % UInt64(bytes.count))
        withUnsafeBytes(of: length.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        if bytes.count > 8 { bytes[8] = UInt8(ascii: "{") }
      }
      rejection("garbage \(i)", bytes)
    }
    // Random edits of a valid file must be rejected or read; never trap.
    let good = try valid()
    var accepted = 0
    for _ in 0..<3000 {
      var bytes = good
      for _ in 0..<(1 + Int(rng.next() % 3)) {
        bytes[Int(rng.next() % UInt64(bytes.count))] = byte()
      }
      do {
        _ = try SafeTensorsFile(bytes: bytes, file: fileName)
        accepted += 1  // e.g. a changed data byte or metadata letter
      } catch let error as CheckpointError {
        XCTAssertTrue(error.description.hasPrefix(fileName))
      }
    }
    XCTAssertGreaterThan(accepted, 0)
  }

  func testMissingAndUnreadableFiles() throws {
    let directory = try makeTemporaryDirectory()
    let e = expectCheckpointError("missing") {
      _ = try SafeTensorsFile.read(from: directory.appendingPathComponent("none.safetensors"))
    }
    guard case .io(let file, _)? = e else { return XCTFail("\(String(describing: e))") }
    XCTAssertEqual(file, "none.safetensors")
    expectCheckpointError("a directory") { _ = try SafeTensorsFile.read(from: directory) }
    let garbage = directory.appendingPathComponent("random.bin")
    try write(testPixels(5000, seed: 8), to: garbage)
    let g = expectCheckpointError("garbage file") { _ = try SafeTensorsFile.read(from: garbage) }
    XCTAssertTrue(g?.description.hasPrefix("random.bin: ") ?? false, "\(String(describing: g))")
  }
}
