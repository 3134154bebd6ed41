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

  /// The largest file `read` accepts (64 GiB): above any checkpoint this library writes, below
  /// what reading would exhaust memory with.
  public static let maxFileSize = 1 << 36

  /// The contents of the safetensors file at `url`, fully validated; throws `CheckpointError`
  /// naming the file for any defect. Only a regular file of at most `maxFileSize` bytes is read:
  /// a device (`/dev/zero`) or a FIFO would be read forever.
  public static func read(from url: URL) throws -> SafeTensorsFile {
    let file = url.lastPathComponent
    let handle = try open(url)
    defer { try? handle.close() }
    let bytes: [UInt8]
    do {
      bytes = [UInt8](try handle.readToEnd() ?? Data())
    } catch {
      throw CheckpointError.io(file: file, reason: "cannot read: \(error.localizedDescription)")
    }
    return try SafeTensorsFile(bytes: bytes, file: file)
  }

  /// The metadata of the safetensors file at `url`, reading only its header (a resume reads the
  /// settings before the whole checkpoint). The header is validated as `read` validates it;
  /// the tensors' data is not read.
  public static func readMetadata(from url: URL) throws -> [String: String] {
    let file = url.lastPathComponent
    let handle = try open(url)
    defer { try? handle.close() }
    do {
      let prefix = [UInt8](try handle.read(upToCount: 8) ?? Data())
      guard prefix.count == 8 else {
        throw CheckpointError.truncated(
          file: file, size: prefix.count, needed: 8, what: "the 8-byte header length")
      }
      let length = prefix.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
      guard length <= UInt64(maxHeaderLength) else {
        throw CheckpointError.notSafeTensors(
          file: file, reason: "header length \(length) exceeds \(maxHeaderLength) bytes")
      }
      let header = [UInt8](try handle.read(upToCount: Int(length)) ?? Data())
      return try SafeTensorsFile.headerMetadata(prefix + header, file: file)
    } catch let error as CheckpointError {
      throw error
    } catch {
      throw CheckpointError.io(file: file, reason: "cannot read: \(error.localizedDescription)")
    }
  }

  /// A handle on `url` after checking that it is a regular file within `maxFileSize`.
  private static func open(_ url: URL) throws -> FileHandle {
    let file = url.lastPathComponent
    do {
      try RegularFile.check(url, limit: maxFileSize)
    } catch .missing(let reason) {
      throw CheckpointError.io(file: file, reason: "cannot read: \(reason)")
    } catch .notRegular {
      throw CheckpointError.io(file: file, reason: "not a regular file")
    } catch .tooLarge(let size) {
      throw CheckpointError.io(
        file: file, reason: "\(size) bytes exceed the limit of \(maxFileSize) bytes")
    }
    do {
      return try FileHandle(forReadingFrom: url)
    } catch {
      throw CheckpointError.io(file: file, reason: "cannot read: \(error.localizedDescription)")
    }
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
