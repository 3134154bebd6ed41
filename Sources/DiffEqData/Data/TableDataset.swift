import Foundation

/// Real-valued rows of a fixed number of named columns: a density's samples, read from a CSV
/// table (`readCSV`) or drawn from a `ToyDensity`.
public struct TableDataset: Sendable, Equatable {
  public var name: String
  public var columns: [String]
  /// The rows, row-major: `count` rows of `dimension` values.
  public var values: [Double]

  public var dimension: Int { columns.count }
  public var count: Int { values.count / max(1, columns.count) }

  public init(name: String, columns: [String], values: [Double]) throws {
    guard !columns.isEmpty else { throw DatasetError.invalidArgument("\(name): no columns") }
    guard !values.isEmpty, values.count % columns.count == 0 else {
      throw DatasetError.invalidArgument(
        "\(name): \(values.count) values do not make rows of \(columns.count)")
    }
    self.name = name
    self.columns = columns
    self.values = values
  }

  /// Row i.
  public func row(_ i: Int) -> ArraySlice<Double> {
    values[(i * dimension)..<((i + 1) * dimension)]
  }

  /// The rows at `indices`, row-major.
  public func rows(_ indices: [Int]) -> [Double] {
    var out: [Double] = []
    out.reserveCapacity(indices.count * dimension)
    for i in indices { out += row(i) }
    return out
  }

  /// The first 80% of the rows (at least one) and the rest, the held-out test split (at least
  /// one).
  public func heldOut(fraction: Double = 0.2) throws -> (train: Self, test: Self) {
    guard count >= 2 else {
      throw DatasetError.invalidArgument(
        "\(name): \(count) row cannot be split into training and test rows")
    }
    let testCount = max(1, Int((Double(count) * fraction).rounded()))
    let cut = (count - min(testCount, count - 1)) * dimension
    return (
      try Self(name: name, columns: columns, values: Array(values[..<cut])),
      try Self(name: name, columns: columns, values: Array(values[cut...]))
    )
  }

  /// Each column's mean and standard deviation (population; 1 for a constant column, which
  /// then is only centred).
  public func columnStatistics() -> (mean: [Double], std: [Double]) {
    let d = dimension
    var mean = [Double](repeating: 0, count: d)
    for i in 0..<count { for j in 0..<d { mean[j] += values[i * d + j] } }
    mean = mean.map { $0 / Double(count) }
    var variance = [Double](repeating: 0, count: d)
    for i in 0..<count {
      for j in 0..<d {
        let e = values[i * d + j] - mean[j]
        variance[j] += e * e
      }
    }
    let std = variance.map { v -> Double in
      let s = (v / Double(count)).squareRoot()
      return s > 0 && s.isFinite ? s : 1
    }
    return (mean, std)
  }

  /// The rows with each column's `mean` subtracted and divided by its `std`.
  public func standardized(mean: [Double], std: [Double]) -> Self {
    var copy = self
    let d = dimension
    for i in 0..<count {
      for j in 0..<d { copy.values[i * d + j] = (values[i * d + j] - mean[j]) / std[j] }
    }
    return copy
  }

  /// Reads a CSV table: a header of column names, then rows of as many finite numbers. Any
  /// defect (a wrong column count, a non-number, NaN or infinity, no rows) is a
  /// `DatasetError.malformedLine` naming the line.
  public static func readCSV(_ url: URL) throws -> TableDataset {
    try parseCSV(fromFileContents: try DataFile.load(url), file: url.lastPathComponent)
  }

  /// `readCSV` of bytes already read (`file` names them in errors): the entry point the fuzzer
  /// drives.
  public static func parseCSV(fromFileContents bytes: [UInt8], file: String) throws
    -> TableDataset
  {
    let csv = try CSVText(bytes: bytes, file: file)
    let names = csv.names
    guard names.allSatisfy({ !$0.isEmpty }) else {
      throw csv.fail(1, "the header must name every column")
    }
    var values: [Double] = []
    for row in csv.rows {
      for (column, field) in try csv.fields(of: row).enumerated() {
        values.append(try csv.number(field, line: row.line, column: column))
      }
    }
    guard !values.isEmpty else { throw csv.fail(2, "no rows after the header") }
    return try TableDataset(name: file, columns: names, values: values)
  }
}
