import DiffEqNet
import Foundation
import XCTest

/// CIFAR-10 and CIFAR-100 binary files written by the test, and the damage the reader rejects.
final class CIFARReaderTests: XCTestCase {
  func testCIFAR10ConcatenatesTheFiveTrainingBatches() throws {
    let directory = try makeTemporaryDirectory()
    var expectedPixels: [UInt8] = []
    var expectedLabels: [Int] = []
    for b in 1...5 {
      let labels: [UInt8] = [UInt8(b), UInt8(9 - b)]
      let (file, pixels) = cifarRecords(labels: labels.map { [$0] }, seed: UInt64(10 * b))
      try write(file, to: directory.appendingPathComponent("data_batch_\(b).bin"))
      expectedPixels += pixels
      expectedLabels += labels.map(Int.init)
    }
    let (test, testPixels) = cifarRecords(labels: [[0], [9], [5]], seed: 99)
    try write(test, to: directory.appendingPathComponent("test_batch.bin"))

    let train = try ImageDataset.cifar10(directory: directory, split: .train)
    XCTAssertEqual(train.count, 10)
    XCTAssertEqual([train.channels, train.height, train.width, train.classes], [3, 32, 32, 10])
    XCTAssertEqual(train.labels, expectedLabels)
    XCTAssertEqual(train.images, expectedPixels)
    let testSet = try ImageDataset.cifar10(directory: directory, split: .test)
    XCTAssertEqual(testSet.labels, [0, 9, 5])
    XCTAssertEqual(testSet.images, testPixels)
    XCTAssertEqual(testSet.name, "cifar10/test")
  }

  func testCIFAR10FindsTheArchiveFolderAndGzippedFiles() throws {
    let directory = try makeTemporaryDirectory()
    let nested = directory.appendingPathComponent("cifar-10-batches-bin")
    try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: true)
    let (file, pixels) = cifarRecords(labels: [[3], [4]], seed: 7)
    try write(try Gzip.compress(file), to: nested.appendingPathComponent("test_batch.bin.gz"))
    let data = try ImageDataset.cifar10(directory: directory, split: .test)
    XCTAssertEqual(data.labels, [3, 4])
    XCTAssertEqual(data.images, pixels)
  }

  func testCIFAR100FineAndCoarseLabels() throws {
    let directory = try makeTemporaryDirectory()
    let (file, pixels) = cifarRecords(labels: [[19, 99], [0, 0], [7, 42]], seed: 3)
    try write(file, to: directory.appendingPathComponent("train.bin"))
    let fine = try ImageDataset.cifar100(directory: directory, split: .train)
    XCTAssertEqual(fine.labels, [99, 0, 42])
    XCTAssertEqual(fine.classes, 100)
    XCTAssertEqual(fine.images, pixels)
    let coarse = try ImageDataset.cifar100(directory: directory, split: .train, fine: false)
    XCTAssertEqual(coarse.labels, [19, 0, 7])
    XCTAssertEqual(coarse.classes, 20)
    XCTAssertEqual(coarse.images, pixels)
  }

  private func cifar10TestError(
    _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line
  )
    throws -> DatasetError?
  {
    let directory = try makeTemporaryDirectory()
    try write(bytes, to: directory.appendingPathComponent("test_batch.bin"))
    return expectDatasetError("malformed CIFAR-10", file: file, line: line) {
      _ = try ImageDataset.cifar10(directory: directory, split: .test)
    }
  }

  func testRejectsPartialRecordsAndEmptyFiles() throws {
    let (file, _) = cifarRecords(labels: [[1], [2]], seed: 1)
    var e = try cifar10TestError(Array(file.dropLast(100)))
    XCTAssertEqual(e, .partialRecord(file: "test_batch.bin", size: 6046, recordSize: 3073))
    XCTAssertEqual(
      e?.description,
      "test_batch.bin: 6046 bytes is not a positive whole number of 3073-byte records")
    e = try cifar10TestError([])
    XCTAssertEqual(e, .partialRecord(file: "test_batch.bin", size: 0, recordSize: 3073))
    // A CIFAR-100 file read as CIFAR-10: 3074-byte records do not divide evenly.
    let (hundred, _) = cifarRecords(labels: [[1, 2], [3, 4]], seed: 2)
    e = try cifar10TestError(hundred)
    XCTAssertEqual(e, .partialRecord(file: "test_batch.bin", size: 6148, recordSize: 3073))
  }

  func testRejectsLabelsOutOfRange() throws {
    let (file, _) = cifarRecords(labels: [[1], [10]], seed: 1)
    XCTAssertEqual(
      try cifar10TestError(file),
      .labelOutOfRange(file: "test_batch.bin", index: 1, label: 10, classes: 10))

    let directory = try makeTemporaryDirectory()
    for (labels, expected) in [
      (
        [[1, 2], [20, 3]],
        DatasetError.labelOutOfRange(file: "test.bin", index: 1, label: 20, classes: 20)
      ),
      ([[1, 100]], .labelOutOfRange(file: "test.bin", index: 0, label: 100, classes: 100)),
    ] as [([[UInt8]], DatasetError)] {
      try write(
        cifarRecords(labels: labels, seed: 4).file, to: directory.appendingPathComponent("test.bin")
      )
      // Both labels are validated whichever is used.
      for fine in [true, false] {
        let e = expectDatasetError("CIFAR-100 label") {
          _ = try ImageDataset.cifar100(directory: directory, split: .test, fine: fine)
        }
        XCTAssertEqual(e, expected)
      }
    }
  }

  func testMissingBatchIsNamed() throws {
    let directory = try makeTemporaryDirectory()
    for b in [1, 2, 4, 5] {
      try write(
        cifarRecords(labels: [[1]], seed: 1).file,
        to: directory.appendingPathComponent("data_batch_\(b).bin"))
    }
    let e = expectDatasetError("missing batch 3") {
      _ = try ImageDataset.cifar10(directory: directory, split: .train)
    }
    XCTAssertEqual(
      e, .fileNotFound(path: directory.appendingPathComponent("data_batch_3.bin").path + "[.gz]"))
  }
}
