import DiffEqNet
import Foundation
import XCTest

/// Replays the fuzzers' seeds (`Fuzz/Corpus`) and every input they ever crashed on
/// (`Fuzz/Regressions`, kept by scripts/fuzz.sh) through the same calls the fuzz targets make
/// (`Fuzz/Sources/Fuzz*/main.swift`): each must end in a value or an error, never a trap.
final class FuzzRegressionTests: XCTestCase {
  let fuzz = repositoryRoot.appendingPathComponent("Fuzz")

  /// The seed and regression inputs of `target`.
  func inputs(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
    var out: [(String, [UInt8])] = []
    for folder in ["Corpus", "Regressions"] {
      let dir = fuzz.appendingPathComponent(folder).appendingPathComponent(target)
      guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else {
        continue
      }
      for name in names.sorted() where !name.hasPrefix(".") {
        out.append(
          (
            "\(folder)/\(target)/\(name)",
            [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
          ))
      }
    }
    return out
  }

  func testSafeTensors() throws {
    let all = try inputs("FuzzSafeTensors")
    XCTAssertFalse(all.isEmpty, "no seeds")
    for (name, bytes) in all {
      guard let file = try? SafeTensorsFile(bytes: bytes, file: name) else { continue }
      XCTAssertEqual(try SafeTensorsFile(bytes: file.serialized(), file: "again"), file, name)
    }
  }

  func testIDX() throws {
    let all = try inputs("FuzzIDX")
    XCTAssertFalse(all.isEmpty, "no seeds")
    for (name, bytes) in all {
      guard let kind = bytes.first else { continue }
      let rest = Array(bytes.dropFirst())
      if kind & 1 == 0 {
        if let images = try? IDXReader.images(fromFileContents: rest, file: name) {
          XCTAssertEqual(images.pixels.count, images.count * images.height * images.width, name)
        }
      } else if let labels = try? IDXReader.labels(fromFileContents: rest, file: name) {
        XCTAssertTrue(labels.allSatisfy { (0..<10).contains($0) }, name)
      }
    }
  }

  func testCIFAR() throws {
    let all = try inputs("FuzzCIFAR")
    XCTAssertFalse(all.isEmpty, "no seeds")
    for (name, bytes) in all {
      guard let kind = bytes.first else { continue }
      let variant: CIFARReader.Variant = kind & 1 == 0 ? .cifar10 : .cifar100(fine: kind & 2 == 0)
      if let records = try? CIFARReader.records(
        fromFileContents: Array(bytes.dropFirst()), file: name, variant: variant)
      {
        XCTAssertEqual(records.pixels.count, records.labels.count * 3 * 32 * 32, name)
      }
    }
  }

  func testSeriesCSV() throws {
    let all = try inputs("FuzzSeriesCSV")
    XCTAssertFalse(all.isEmpty, "no seeds")
    var parsed = 0
    for (name, bytes) in all {
      guard let data = try? TimeSeriesDataset.parseCSV(fromFileContents: bytes, file: name) else {
        continue
      }
      parsed += 1
      for series in data.series {
        XCTAssertEqual(series.times.count, series.values.count, name)
        XCTAssertTrue(series.values.allSatisfy { $0.count == data.dimension }, name)
        XCTAssertTrue(zip(series.times, series.times.dropFirst()).allSatisfy { $0 < $1 }, name)
      }
    }
    XCTAssertGreaterThan(parsed, 0, "no seed parses: the seeds no longer reach the reader's end")
  }

  func testTableCSV() throws {
    let all = try inputs("FuzzTableCSV")
    XCTAssertFalse(all.isEmpty, "no seeds")
    var parsed = 0
    for (name, bytes) in all {
      guard let data = try? TableDataset.parseCSV(fromFileContents: bytes, file: name) else {
        continue
      }
      parsed += 1
      XCTAssertEqual(data.values.count, data.count * data.dimension, name)
      XCTAssertTrue(data.values.allSatisfy(\.isFinite), name)
    }
    XCTAssertGreaterThan(parsed, 0, "no seed parses: the seeds no longer reach the reader's end")
  }

  func testSettings() throws {
    let all = try inputs("FuzzSettings")
    XCTAssertFalse(all.isEmpty, "no seeds")
    for (name, bytes) in all {
      guard let c = try? JSONDecoder().decode(TrainingConfiguration.self, from: Data(bytes)),
        (try? c.validate()) != nil
      else { continue }
      _ = c.modelConfiguration(channels: 1, classes: 10)
      let again = try JSONDecoder().decode(
        TrainingConfiguration.self, from: JSONEncoder().encode(c))
      XCTAssertEqual(again, c, name)
    }
  }
}
