import DiffEqNet
import Foundation
import XCTest

/// The series CSV reader: a well-formed file with irregular spacing, and every defect an error
/// naming its line.
final class TimeSeriesCSVTests: XCTestCase {
  func write(_ text: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory
      .appendingPathComponent("series-\(UUID().uuidString).csv")
    try text.write(to: url, atomically: true, encoding: .utf8)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
  }

  func testReadsSeriesWithIrregularTimes() throws {
    let url = try write(
      "series,time,v1,v2\r\na,0,1,2\na,0.5,3,4\na,2,5,6\nb,1,7,8\nb,1.25,9,10\n\n")
    let data = try TimeSeriesDataset.readCSV(url)
    XCTAssertEqual(data.dimension, 2)
    XCTAssertEqual(data.series.map(\.id), ["a", "b"])
    XCTAssertEqual(data.series[0].times, [0, 0.5, 2])
    XCTAssertEqual(data.series[1].values, [[7, 8], [9, 10]])
    XCTAssertEqual(data.series[0].value(at: 1.25), [4, 5])
    let (train, test) = try data.heldOut()
    XCTAssertEqual(train.series.map(\.id), ["a"])
    XCTAssertEqual(test.series.map(\.id), ["b"])
  }

  func testMalformedFilesNameTheLine() throws {
    let cases: [(String, Int, String)] = [
      ("series,time,v1\na,0,1\na,1\n", 3, "columns"),
      ("series,time,v1\na,0,1\na,1,x\n", 3, "not a finite number"),
      ("series,time,v1\na,0,1\na,1,nan\n", 3, "not a finite number"),
      ("series,time,v1\na,0,1\na,0,2\n", 3, "does not increase"),
      ("series,time,v1\na,1,1\na,0.5,2\n", 3, "does not increase"),
      ("series,time,v1\n,0,1\n", 2, "empty series id"),
      ("series,time,v1\na,0,1\nb,0,1\na,1,1\n", 4, "not contiguous"),
      ("id,time,v1\na,0,1\n", 1, "header"),
      ("series,time\na,0\n", 1, "header"),
      ("", 1, "empty file"),
      ("series,time,v1\n", 2, "no observations"),
    ]
    for (text, line, phrase) in cases {
      let url = try write(text)
      XCTAssertThrowsError(try TimeSeriesDataset.readCSV(url), text) { error in
        guard case DatasetError.malformedLine(_, let l, let reason) = error else {
          return XCTFail("\(text): \(error)")
        }
        XCTAssertEqual(l, line, "\(text): \(error)")
        XCTAssertTrue(reason.contains(phrase), "\(text): \(error)")
        XCTAssertTrue("\(error)".contains("line \(line)"), "\(error)")
      }
    }
  }
}
