import Kernels

extension SafeTensorsFile {
  /// The header of a safetensors file whose first bytes are `bytes` (the whole file, or at
  /// least its length prefix and header): where the data starts, the metadata, and each tensor's
  /// type, shape and offsets, validated as `init(bytes:file:)` documents.
  static func parseHeader(_ bytes: [UInt8], file: String) throws -> (
    headerEnd: Int, metadata: [String: String],
    layout: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int)]
  ) {
    guard bytes.count >= 8 else {
      throw CheckpointError.truncated(
        file: file, size: bytes.count, needed: 8, what: "the 8-byte header length")
    }
    let length = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    guard length <= UInt64(Self.maxHeaderLength) else {
      throw CheckpointError.notSafeTensors(
        file: file, reason: "header length \(length) exceeds \(Self.maxHeaderLength) bytes")
    }
    let headerEnd = 8 + Int(length)
    guard headerEnd <= bytes.count else {
      throw CheckpointError.truncated(
        file: file, size: bytes.count, needed: headerEnd, what: "a header of \(length) bytes")
    }
    let header = bytes[8..<headerEnd]
    guard header.first == UInt8(ascii: "{") else {
      throw CheckpointError.notSafeTensors(file: file, reason: "the header does not start with '{'")
    }
    guard String(validating: header, as: UTF8.self) != nil else {
      throw CheckpointError.notSafeTensors(file: file, reason: "the header is not valid UTF-8")
    }
    let json: SafeTensorsJSON
    do {
      json = try SafeTensorsJSON.parse(header)
    } catch {
      throw CheckpointError.notSafeTensors(file: file, reason: "the header is not JSON: \(error)")
    }
    guard case .object(let entries) = json else {
      throw CheckpointError.notSafeTensors(file: file, reason: "the header is not a JSON object")
    }

    var metadata: [String: String] = [:]
    var layout: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int)] = []
    for (name, value) in entries {
      if name == Self.metadataKey {
        metadata = try Self.parseMetadata(value, file: file)
      } else {
        let (dtype, shape, begin, end) = try Self.parseEntry(name, value, file: file)
        layout.append((name, dtype, shape, begin, end))
      }
    }

    return (headerEnd, metadata, layout)
  }

  /// The metadata of a header (`bytes` holds the length prefix and the header).
  static func headerMetadata(_ bytes: [UInt8], file: String) throws -> [String: String] {
    try parseHeader(bytes, file: file).metadata
  }

  /// Parses and validates a whole safetensors file held in memory; `file` names it in errors.
  ///
  /// Checks, in order: the length prefix is present, at most `maxHeaderLength` and within the
  /// file; the header is a UTF-8 JSON object; each entry has exactly `dtype` (F32 or F64),
  /// `shape` (non-negative integers) and `data_offsets` (two integers, begin ≤ end) whose span
  /// equals the shape's byte size; `__metadata__`, if present, maps strings to strings; and the
  /// tensors tile the data section exactly, without overlaps or gaps. Never traps: every defect
  /// throws `CheckpointError`.
  public init(bytes: [UInt8], file: String = "<memory>") throws {
    var (headerEnd, metadata, layout) = try Self.parseHeader(bytes, file: file)

    // The sorted offsets must tile 0..<end exactly; the header thereby fixes the data size.
    layout.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
    var cursor = 0
    var previous: String?
    for t in layout {
      guard t.begin >= cursor else {
        throw CheckpointError.invalidOffsets(
          file: file, tensor: t.name,
          reason: "data_offsets [\(t.begin), \(t.end)] overlap tensor '\(previous ?? "")'")
      }
      guard t.begin == cursor else {
        throw CheckpointError.invalidOffsets(
          file: file, tensor: t.name,
          reason: "data_offsets [\(t.begin), \(t.end)] leave a gap after byte \(cursor)")
      }
      cursor = t.end
      previous = t.name
    }
    let dataSize = bytes.count - headerEnd
    guard cursor <= dataSize else {
      throw CheckpointError.truncated(
        file: file, size: bytes.count,
        needed: cursor > Int.max - headerEnd ? Int.max : headerEnd + cursor,
        what: "the header with \(cursor) bytes of tensor data")
    }
    guard cursor == dataSize else {
      throw CheckpointError.invalidHeader(
        file: file,
        reason: "the tensors cover \(cursor) bytes of a \(dataSize)-byte data section")
    }

    var tensors: [String: HostTensor] = [:]
    for t in layout {
      tensors[t.name] = try HostTensor(
        dtype: t.dtype, shape: t.shape,
        bytes: Array(bytes[(headerEnd + t.begin)..<(headerEnd + t.end)]))
    }
    self.init(tensors: tensors, metadata: metadata)
  }

  private static func parseMetadata(_ value: SafeTensorsJSON, file: String) throws
    -> [String: String]
  {
    guard case .object(let members) = value else {
      throw CheckpointError.invalidHeader(
        file: file, reason: "'\(metadataKey)' is not an object of strings")
    }
    var metadata: [String: String] = [:]
    for (key, value) in members {
      guard case .string(let s) = value else {
        throw CheckpointError.invalidHeader(
          file: file, reason: "'\(metadataKey)' value for '\(key)' is not a string")
      }
      metadata[key] = s
    }
    return metadata
  }

  private static func parseEntry(_ name: String, _ value: SafeTensorsJSON, file: String) throws
    -> (DType, [Int], Int, Int)
  {
    func invalid(_ reason: String) -> CheckpointError {
      .invalidHeader(file: file, reason: "tensor '\(name)': \(reason)")
    }
    guard case .object(let members) = value else { throw invalid("entry is not an object") }
    let fields = Dictionary(members.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
    let unknown = fields.keys.filter { !["dtype", "shape", "data_offsets"].contains($0) }
    guard unknown.isEmpty else { throw invalid("unknown fields \(unknown.sorted())") }

    guard case .string(let dtypeName)? = fields["dtype"] else {
      throw invalid("missing or non-string 'dtype'")
    }
    guard let dtype = DType(safeTensorsName: dtypeName) else {
      throw CheckpointError.unsupportedDType(file: file, tensor: name, dtype: dtypeName)
    }
    guard case .array(let dims)? = fields["shape"] else { throw invalid("missing 'shape' array") }
    let shape = dims.compactMap(\.nonNegativeInt)
    guard shape.count == dims.count else {
      throw invalid("'shape' must hold non-negative integers")
    }
    guard case .array(let offsets)? = fields["data_offsets"], offsets.count == 2,
      let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt
    else {
      throw invalid("'data_offsets' must be two non-negative integers")
    }
    guard begin <= end else {
      throw CheckpointError.invalidOffsets(
        file: file, tensor: name, reason: "data_offsets [\(begin), \(end)] end before they begin")
    }
    guard let size = HostTensor.byteCount(shape: shape, dtype: dtype), size == end - begin else {
      throw CheckpointError.invalidOffsets(
        file: file, tensor: name,
        reason: "shape \(shape) of \(dtypeName) does not fill data_offsets [\(begin), \(end)]")
    }
    return (dtype, shape, begin, end)
  }
}
