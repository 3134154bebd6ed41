import DiffEqNet
import Foundation
import XCTest

/// The table CSV reader (`--data table:FILE.csv`) and the generated 2-D densities.
final class TableCSVTests: XCTestCase {
  func write(_ text: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory
      .appendingPathComponent("table-\(UUID().uuidString).csv")
    try text.write(to: url, atomically: true, encoding: .utf8)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
  }

  func testReadsSplitsAndStandardizes() throws {
    let url = try write("a, b\r\n1,10\n2,20\n3,30\n4,40\n5,50\n\n")
    let data = try TableDataset.readCSV(url)
    XCTAssertEqual(data.columns, ["a", "b"])
    XCTAssertEqual(data.count, 5)
    XCTAssertEqual(Array(data.row(1)), [2, 20])
    let (train, test) = try data.heldOut()
    XCTAssertEqual(train.count, 4)
    XCTAssertEqual(test.values, [5, 50])
    let (mean, std) = train.columnStatistics()
    XCTAssertEqual(mean, [2.5, 25])
    XCTAssertEqual(std[0], (1.25).squareRoot(), accuracy: 1e-12)
    let s = train.standardized(mean: mean, std: std)
    let (m2, s2) = s.columnStatistics()
    for j in 0..<2 {
      XCTAssertEqual(m2[j], 0, accuracy: 1e-12)
      XCTAssertEqual(s2[j], 1, accuracy: 1e-12)
    }
    // A constant column is centred, not divided by zero.
    let constant = try TableDataset(name: "c", columns: ["x"], values: [3, 3, 3])
    XCTAssertEqual(constant.columnStatistics().std, [1])
  }

  func testMalformedFilesNameTheFileAndLine() throws {
    let cases: [(String, Int, String)] = [
      ("a,b\n1,2\n3\n", 3, "columns"),
      ("a,b\n1,2\n3,4,5\n", 3, "columns"),
      ("a,b\n1,2\n3,x\n", 3, "not a finite number"),
      ("a,b\n1,nan\n", 2, "not a finite number"),
      ("a,b\n1,inf\n", 2, "not a finite number"),
      ("a,b\n1,\n", 2, "not a finite number"),
      ("a,b\n", 2, "no rows"),
      ("", 1, "empty file"),
      ("a,\n1,2\n", 1, "header"),
    ]
    for (text, line, message) in cases {
      let url = try write(text)
      XCTAssertThrowsError(try TableDataset.readCSV(url), text) { error in
        guard case DatasetError.malformedLine(let file, let l, _) = error else {
          return XCTFail("\(text): \(error)")
        }
        XCTAssertEqual(file, url.lastPathComponent)
        XCTAssertEqual(l, line, text)
        XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
      }
    }
  }

  /// Each density is a function of the seed, finite, and where its construction puts it: the
  /// spread and centre of each set's points against what `toy_data.py` gives (from its formulas).
  func testToyDensitiesAreSeededAndWherePlaced() throws {
    let expected: [ToyDensity: (mean: [Double], radius: ClosedRange<Double>)] = [
      .twoMoons: ([0, 0.3], 0.5...3.5),
      .circles: ([0, 0], 1.0...4),
      .eightGaussians: ([0, 0], 1.5...4.5),
      .pinwheel: ([0, 0], 0.5...8),
      .checkerboard: ([0, 0], 0.5...6),
      .twoSpirals: ([0, 0], 0.2...4.5),
    ]
    for density in ToyDensity.allCases {
      let a = try density.dataset(count: 4000, seed: 3)
      XCTAssertEqual(a, try density.dataset(count: 4000, seed: 3))
      XCTAssertNotEqual(a, try density.dataset(count: 4000, seed: 4))
      XCTAssertTrue(a.values.allSatisfy(\.isFinite))
      let (mean, _) = a.columnStatistics()
      let (m, r) = expected[density]!
      for j in 0..<2 { XCTAssertEqual(mean[j], m[j], accuracy: 0.15, "\(density) mean \(mean)") }
      let radius = (0..<a.count).map { i in
        let p = a.row(i)
        return (p[p.startIndex] * p[p.startIndex] + p[p.startIndex + 1] * p[p.startIndex + 1])
          .squareRoot()
      }
      let median = radius.sorted()[radius.count / 2]
      XCTAssertTrue(r.contains(median), "\(density): median radius \(median)")
    }
    // The checkerboard's squares alternate: no point where ⌊x/2⌋ + ⌊y/2⌋ is odd.
    let board = try ToyDensity.checkerboard.dataset(count: 2000, seed: 5)
    for i in 0..<board.count {
      let p = Array(board.row(i))
      let parity = Int(floor(p[0] / 2) + floor(p[1] / 2))
      XCTAssertEqual(((parity % 2) + 2) % 2, 0, "\(p)")
    }
  }
}
