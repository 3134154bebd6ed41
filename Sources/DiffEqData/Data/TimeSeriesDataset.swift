import Foundation

/// Observations of one d-dimensional series at strictly increasing times (irregular spacing
/// allowed).
public struct TimeSeries: Sendable, Equatable {
  public var id: String
  public var times: [Double]
  /// values[i] is the observation at times[i], of the data set's dimension.
  public var values: [[Double]]

  public init(id: String, times: [Double], values: [[Double]]) {
    self.id = id
    self.times = times
    self.values = values
  }

  /// The observation at `t`, linearly interpolated between the nearest observations (the first
  /// or last one outside their range).
  public func value(at t: Double) -> [Double] {
    if t <= times[0] { return values[0] }
    if t >= times[times.count - 1] { return values[values.count - 1] }
    var lo = 0
    var hi = times.count - 1
    while hi - lo > 1 {
      let mid = (lo + hi) / 2
      if times[mid] <= t { lo = mid } else { hi = mid }
    }
    let w = (t - times[lo]) / (times[hi] - times[lo])
    return zip(values[lo], values[hi]).map { (1 - w) * $0 + w * $1 }
  }
}

/// A set of time series of one dimension: read from a CSV file (`readCSV`) or generated
/// (`mackeyGlass`).
public struct TimeSeriesDataset: Sendable, Equatable {
  public var name: String
  public var dimension: Int
  public var series: [TimeSeries]

  public init(name: String, dimension: Int, series: [TimeSeries]) throws {
    guard dimension >= 1 else { throw DatasetError.invalidArgument("\(name): no value columns") }
    guard !series.isEmpty else { throw DatasetError.invalidArgument("\(name): no series") }
    for s in series {
      guard !s.times.isEmpty, s.times.count == s.values.count,
        s.values.allSatisfy({ $0.count == dimension })
      else {
        throw DatasetError.invalidArgument("\(name): series \(s.id) is empty or inconsistent")
      }
    }
    self.name = name
    self.dimension = dimension
    self.series = series
  }

  /// The first 80% of the series (at least one) and the rest (the held-out test split; at least
  /// one when there are two or more).
  public func heldOut(fraction: Double = 0.2) throws -> (train: Self, test: Self) {
    guard series.count >= 2 else {
      throw DatasetError.invalidArgument(
        "\(name): \(series.count) series cannot be split into training and test series")
    }
    let testCount = max(1, Int((Double(series.count) * fraction).rounded()))
    let cut = series.count - min(testCount, series.count - 1)
    return (
      try Self(name: name, dimension: dimension, series: Array(series[..<cut])),
      try Self(name: name, dimension: dimension, series: Array(series[cut...]))
    )
  }

  /// The first `n` series (all of them when `n` is 0 or at least their count).
  public func first(_ n: Int) throws -> Self {
    guard n > 0, n < series.count else { return self }
    return try Self(name: name, dimension: dimension, series: Array(series[..<n]))
  }

  /// Reads a CSV file with the header `series,time,v1,…,vd` (d ≥ 1) and one observation per
  /// row: rows of a series are contiguous, times strictly increasing within it, every value a
  /// finite number. Any defect is a `DatasetError.malformedLine` naming the line.
  public static func readCSV(_ url: URL) throws -> TimeSeriesDataset {
    try parseCSV(fromFileContents: try DataFile.load(url), file: url.lastPathComponent)
  }

  /// `readCSV` of bytes already read (`file` names them in errors): the entry point the fuzzer
  /// drives.
  public static func parseCSV(fromFileContents bytes: [UInt8], file: String) throws
    -> TimeSeriesDataset
  {
    let csv = try CSVText(bytes: bytes, file: file)
    let names = csv.names
    let fail = csv.fail
    guard names.count >= 3, names[0] == "series", names[1] == "time" else {
      throw fail(1, "the header must be series,time,v1,…,vd (at least one value column)")
    }
    let dimension = names.count - 2
    var series: [TimeSeries] = []
    var seen: Set<String> = []
    for row in csv.rows {
      let number = row.line
      let fields = try csv.fields(of: row)
      let id = fields[0]
      guard !id.isEmpty else { throw fail(number, "empty series id") }
      var numbers: [Double] = []
      for (column, field) in fields.enumerated().dropFirst() {
        numbers.append(try csv.number(field, line: number, column: column))
      }
      if series.last?.id != id {
        guard !seen.contains(id) else {
          throw fail(number, "rows of series \(id) are not contiguous")
        }
        seen.insert(id)
        series.append(TimeSeries(id: id, times: [], values: []))
      }
      if let last = series[series.count - 1].times.last, !(numbers[0] > last) {
        throw fail(number, "time \(numbers[0]) of series \(id) does not increase (after \(last))")
      }
      series[series.count - 1].times.append(numbers[0])
      series[series.count - 1].values.append(Array(numbers.dropFirst()))
    }
    guard !series.isEmpty else { throw fail(2, "no observations after the header") }
    return try TimeSeriesDataset(name: file, dimension: dimension, series: series)
  }

  /// The Mackey–Glass series (`MackeyGlass`, unit spacing after a transient of 300) cut into
  /// `count` consecutive series of `length` observations each (one dimension).
  public static func mackeyGlass(count: Int = 10, length: Int = 200) throws -> TimeSeriesDataset {
    guard count >= 1, length >= 2 else {
      throw DatasetError.invalidArgument("mackey-glass: count ≥ 1 and length ≥ 2 needed")
    }
    let x = MackeyGlass().series(count: count * length, transient: 300)
    return try TimeSeriesDataset(
      name: "mackey-glass", dimension: 1,
      series: (0..<count).map { k in
        TimeSeries(
          id: "\(k)", times: (0..<length).map { Double(k * length + $0) },
          values: (0..<length).map { [x[k * length + $0]] })
      })
  }
}
