import Foundation
import Kernels

/// Named tensors and string metadata in the safetensors format, byte-compatible with Hugging
/// Face's `safetensors` library.
///
/// Layout: an 8-byte little-endian unsigned header length N; N bytes of UTF-8 JSON, an object
/// mapping each tensor name to `{"dtype": "F32"|"F64", "shape": [...], "data_offsets": [begin,
/// end]}` plus an optional `"__metadata__"` object of string values, padded with spaces to a
/// multiple of 8 bytes; then the data section, each tensor's little-endian elements at
/// `begin..<end` relative to its start, packed with no gaps.
///
/// Files are written as the Python library writes them: tensors ordered by element size
/// (largest first) then by name, `__metadata__` first, compact JSON.
public struct SafeTensorsFile: Sendable, Equatable {
  public var tensors: [String: HostTensor]
  public var metadata: [String: String]

  /// The largest header accepted, as in the reference implementation.
  public static let maxHeaderLength = 100_000_000
  /// The header key that holds the metadata, which therefore cannot name a tensor.
  public static let metadataKey = "__metadata__"

  public init(tensors: [String: HostTensor] = [:], metadata: [String: String] = [:]) {
    self.tensors = tensors
    self.metadata = metadata
  }

  /// The contents of the safetensors file at `url`, fully validated; throws `CheckpointError`
  /// naming the file for any defect.
  public static func read(from url: URL) throws -> SafeTensorsFile {
    let file = url.lastPathComponent
    let bytes: [UInt8]
    do {
      bytes = [UInt8](try Data(contentsOf: url))
    } catch {
      throw CheckpointError.io(file: file, reason: "cannot read: \(error.localizedDescription)")
    }
    return try SafeTensorsFile(bytes: bytes, file: file)
  }

  /// Writes the file atomically: to a temporary file beside `url`, synced, then renamed over
  /// `url` and the directory synced. If anything fails, `url` keeps its previous contents (or
  /// stays absent) and the temporary file is removed.
  public func write(to url: URL) throws {
    try AtomicFile.replace(url, with: encodedParts())
  }

  /// The whole file as bytes.
  public func serialized() throws -> [UInt8] {
    Array(try encodedParts().joined())
  }

  /// The length prefix and header, then each tensor's data in file order.
  func encodedParts() throws -> [[UInt8]] {
    if tensors[Self.metadataKey] != nil {
      throw CheckpointError.invalidArgument(
        "safetensors: '\(Self.metadataKey)' is reserved and cannot name a tensor")
    }
    // Rust's `str` ordering, which the Python library sorts names with, is by UTF-8 bytes.
    let byName = { (a: String, b: String) in a.utf8.lexicographicallyPrecedes(b.utf8) }
    let ordered = tensors.sorted { a, b in
      a.value.dtype.size != b.value.dtype.size
        ? a.value.dtype.size > b.value.dtype.size : byName(a.key, b.key)
    }
    var entries: [String] = []
    if !metadata.isEmpty {
      let members = metadata.sorted { byName($0.key, $1.key) }.map {
        SafeTensorsJSON.quoted($0.key) + ":" + SafeTensorsJSON.quoted($0.value)
      }
      entries.append(
        SafeTensorsJSON.quoted(Self.metadataKey) + ":{" + members.joined(separator: ",") + "}")
    }
    var offset = 0
    for (name, t) in ordered {
      let shape = t.shape.map(String.init).joined(separator: ",")
      entries.append(
        SafeTensorsJSON.quoted(name) + ":{\"dtype\":\"\(t.dtype.safeTensorsName)\",\"shape\":["
          + shape + "],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}")
      offset += t.bytes.count
    }
    var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
    header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
    guard header.count <= Self.maxHeaderLength else {
      throw CheckpointError.invalidArgument(
        "safetensors: a header of \(header.count) bytes exceeds \(Self.maxHeaderLength)")
    }
    let length = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
    return [length + header] + ordered.map(\.value.bytes)
  }
}

extension DType {
  /// The dtype's name in a safetensors header.
  var safeTensorsName: String { self == .float32 ? "F32" : "F64" }

  init?(safeTensorsName: String) {
    switch safeTensorsName {
    case "F32": self = .float32
    case "F64": self = .float64
    default: return nil
    }
  }
}
