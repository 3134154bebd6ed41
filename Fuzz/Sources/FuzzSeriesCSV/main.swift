import DiffEqNet
import FuzzSupport

// The series CSV reader (`--data series:FILE.csv`): any bytes end in a data set or an error.
fuzz { bytes in
  let data = try TimeSeriesDataset.parseCSV(fromFileContents: bytes, file: "fuzz.csv")
  for series in data.series {
    precondition(series.times.count == series.values.count && !series.times.isEmpty)
    precondition(series.values.allSatisfy { $0.count == data.dimension })
    precondition(zip(series.times, series.times.dropFirst()).allSatisfy { $0 < $1 })
  }
}
