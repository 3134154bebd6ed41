/// A CSV file as the table and series readers see it: UTF-8 text, a header of trimmed names,
/// then data rows of trimmed fields (trailing empty lines dropped). Every defect the readers find
/// is a `DatasetError` naming the file and the line.
struct CSVText {
  let file: String
  /// The header's fields.
  let names: [String]
  /// Each data row's line number (the header is line 1) and its fields.
  let rows: [(line: Int, fields: [String])]

  init(bytes: [UInt8], file: String) throws {
    guard let text = String(bytes: bytes, encoding: .utf8) else {
      throw DatasetError.unreadable(file: file, reason: "not UTF-8 text")
    }
    // "\r\n" is one Character in Swift, a newline like "\n".
    var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
    while lines.last?.isEmpty == true { lines.removeLast() }
    guard let header = lines.first else {
      throw DatasetError.malformedLine(
        file: file, line: 1, reason: "empty file: expected the header")
    }
    func fields(_ line: Substring) -> [String] {
      line.split(separator: ",", omittingEmptySubsequences: false).map {
        $0.trimmingCharacters(in: .whitespaces)
      }
    }
    self.file = file
    names = fields(header)
    rows = lines.enumerated().dropFirst().map { (line: $0.offset + 1, fields: fields($0.element)) }
  }

  func fail(_ line: Int, _ reason: String) -> DatasetError {
    .malformedLine(file: file, line: line, reason: reason)
  }

  /// The row's fields, which must be as many as the header's.
  func fields(of row: (line: Int, fields: [String])) throws -> [String] {
    guard row.fields.count == names.count else {
      throw fail(row.line, "\(row.fields.count) columns, the header has \(names.count)")
    }
    return row.fields
  }

  /// Field `column` of a row as a finite number.
  func number(_ field: String, line: Int, column: Int) throws -> Double {
    guard let v = Double(field), v.isFinite else {
      throw fail(line, "'\(field)' in column \(names[column]) is not a finite number")
    }
    return v
  }
}
