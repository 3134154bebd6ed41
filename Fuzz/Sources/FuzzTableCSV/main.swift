import DiffEqNet
import FuzzSupport

// The table CSV reader (`--data table:FILE.csv`): any bytes end in a data set or an error.
fuzz { bytes in
  let data = try TableDataset.parseCSV(fromFileContents: bytes, file: "fuzz.csv")
  precondition(data.count >= 1 && data.values.count == data.count * data.dimension)
  precondition(data.values.allSatisfy(\.isFinite))
}
