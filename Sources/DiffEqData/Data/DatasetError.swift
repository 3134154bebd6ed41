/// Why a data set could not be loaded, or a loader not configured. Every message begins with the
/// file it concerns (its name; the full path when it is missing) and then says what is wrong.
public enum DatasetError: Error, CustomStringConvertible, Equatable, Sendable {
  /// Neither the file nor any of the accepted alternatives (such as a `.gz` twin) exists.
  case fileNotFound(path: String)
  /// The file exists but could not be read (a directory, permissions, an I/O error).
  case unreadable(file: String, reason: String)
  /// The file, or its decompressed contents, exceed the size a reader accepts.
  case tooLarge(file: String, bytes: Int, limit: Int)
  /// A gzip stream that zlib rejects: corrupt, truncated, or followed by garbage.
  case corruptCompression(file: String, reason: String)
  /// The leading magic number does not identify the expected kind of file.
  case badMagic(file: String, found: UInt32, expected: UInt32, kind: String)
  /// Fewer bytes than the header (or the format) promises.
  case truncated(file: String, size: Int, expected: Int, what: String)
  /// More bytes than the header promises.
  case trailingData(file: String, size: Int, expected: Int, what: String)
  /// Header fields that cannot describe a valid data set (zero or absurd dimensions).
  case invalidHeader(file: String, reason: String)
  /// A label outside `0..<classes`.
  case labelOutOfRange(file: String, index: Int, label: Int, classes: Int)
  /// An images file and a labels file that disagree on the number of examples.
  case countMismatch(images: String, imageCount: Int, labels: String, labelCount: Int)
  /// A record-based file whose size is not a positive whole number of records.
  case partialRecord(file: String, size: Int, recordSize: Int)
  /// A text file with a defect on a line (1-based, the header is line 1).
  case malformedLine(file: String, line: Int, reason: String)
  /// An inconsistent in-memory data set or loader configuration (no file involved).
  case invalidArgument(String)

  public var description: String {
    switch self {
    case .fileNotFound(let path): return "\(path): no such file"
    case .unreadable(let file, let reason): return "\(file): cannot read: \(reason)"
    case .tooLarge(let file, let bytes, let limit):
      return "\(file): \(bytes) bytes exceeds the limit of \(limit) bytes"
    case .corruptCompression(let file, let reason): return "\(file): bad gzip data: \(reason)"
    case .badMagic(let file, let found, let expected, let kind):
      return "\(file): bad magic number \(hex(found)), expected \(hex(expected)) (\(kind))"
    case .truncated(let file, let size, let expected, let what):
      return "\(file): truncated: \(size) bytes, expected \(expected) for \(what)"
    case .trailingData(let file, let size, let expected, let what):
      return "\(file): \(size) bytes, expected exactly \(expected) for \(what)"
    case .invalidHeader(let file, let reason): return "\(file): invalid header: \(reason)"
    case .labelOutOfRange(let file, let index, let label, let classes):
      return "\(file): label \(label) of example \(index) is outside 0..<\(classes)"
    case .countMismatch(let images, let imageCount, let labels, let labelCount):
      return "\(images): \(imageCount) images but \(labels) has \(labelCount) labels"
    case .partialRecord(let file, let size, let recordSize):
      return
        "\(file): \(size) bytes is not a positive whole number of \(recordSize)-byte records"
    case .malformedLine(let file, let line, let reason): return "\(file): line \(line): \(reason)"
    case .invalidArgument(let reason): return reason
    }
  }
}

private func hex(_ x: UInt32) -> String {
  let digits = String(x, radix: 16)
  return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
