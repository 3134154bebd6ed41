import DiffEqNet
import Foundation
import XCTest

/// MNIST-format IDX files: the real 5k subset, hand-written files (raw and gzipped), and every
/// kind of damage the reader must reject with a message naming the file.
final class IDXReaderTests: XCTestCase {
  func testLoadsTheMNIST5kSubset() throws {
    let directory = repositoryRoot.appendingPathComponent("data/mnist-5k")
    for (split, count) in [(ImageDataset.Split.train, 4000), (.test, 1000)] {
      let data = try ImageDataset.mnist(directory: directory, split: split)
      XCTAssertEqual(data.count, count)
      XCTAssertEqual([data.channels, data.height, data.width], [1, 28, 28])
      XCTAssertEqual(data.classes, 10)
      XCTAssertEqual(data.images.count, count * 784)
      XCTAssertEqual(data.classCounts(), Array(repeating: count / 10, count: 10))
      XCTAssertEqual(data.name, "mnist/\(split.rawValue)")
      // Digits are white strokes on black: mostly zeros, some saturated pixels.
      let zeros = data.images.filter { $0 == 0 }.count
      XCTAssertGreaterThan(zeros, data.images.count / 2)
      XCTAssertEqual(data.images.max(), 255)
    }
  }

  /// Three 2×3 images in `directory`, gzipped or not.
  private func writeTiny(
    in directory: URL, gzip: Bool, prefix: String = "train", labels: [UInt8] = [0, 9, 4]
  ) throws -> [UInt8] {
    let pixels = testPixels(3 * 6, seed: 1)
    var images = idxImages(count: 3, height: 2, width: 3, pixels: pixels)
    var labelFile = idxLabels(labels)
    var suffix = ""
    if gzip {
      images = try Gzip.compress(images)
      labelFile = try Gzip.compress(labelFile)
      suffix = ".gz"
    }
    try write(images, to: directory.appendingPathComponent("\(prefix)-images-idx3-ubyte\(suffix)"))
    try write(
      labelFile, to: directory.appendingPathComponent("\(prefix)-labels-idx1-ubyte\(suffix)"))
    return pixels
  }

  func testRawAndGzippedFilesGiveTheSameDataSet() throws {
    let raw = try makeTemporaryDirectory()
    let gz = try makeTemporaryDirectory()
    let pixels = try writeTiny(in: raw, gzip: false)
    _ = try writeTiny(in: gz, gzip: true)
    let a = try ImageDataset.mnist(directory: raw, split: .train)
    let b = try ImageDataset.mnist(directory: gz, split: .train)
    XCTAssertEqual(a, b)
    XCTAssertEqual(a.images, pixels)
    XCTAssertEqual(a.labels, [0, 9, 4])
    XCTAssertEqual([a.count, a.channels, a.height, a.width, a.classes], [3, 1, 2, 3, 10])
  }

  func testTestSplitUsesT10kFiles() throws {
    let directory = try makeTemporaryDirectory()
    _ = try writeTiny(in: directory, gzip: true, prefix: "t10k", labels: [1, 2, 3])
    XCTAssertEqual(try ImageDataset.mnist(directory: directory, split: .test).labels, [1, 2, 3])
    let e = expectDatasetError("no train files") {
      _ = try ImageDataset.mnist(directory: directory, split: .train)
    }
    guard case .fileNotFound(let path)? = e else { return XCTFail("\(String(describing: e))") }
    XCTAssertTrue(path.contains("train-images-idx3-ubyte"), path)
  }

  /// Writes an images and a labels file and returns the error loading them gives.
  private func loadError(
    images: [UInt8], labels: [UInt8], gzipImages: Bool = false,
    file: StaticString = #filePath, line: UInt = #line
  ) throws -> DatasetError? {
    let directory = try makeTemporaryDirectory()
    let imageName = "train-images-idx3-ubyte" + (gzipImages ? ".gz" : "")
    try write(images, to: directory.appendingPathComponent(imageName))
    try write(labels, to: directory.appendingPathComponent("train-labels-idx1-ubyte"))
    let error = expectDatasetError("malformed files", file: file, line: line) {
      _ = try ImageDataset.mnist(directory: directory, split: .train)
    }
    return error
  }

  func testRejectsBadMagicNumbers() throws {
    let pixels = testPixels(8, seed: 2)
    let labels = idxLabels([1, 2])
    var e = try loadError(
      images: try Gzip.compress(
        idxImages(count: 2, height: 2, width: 2, pixels: pixels, magic: 0x802)),
      labels: labels, gzipImages: true)
    XCTAssertEqual(
      e?.description,
      "train-images-idx3-ubyte.gz: bad magic number 0x00000802, expected 0x00000803 (IDX images)")
    // A labels file where the images should be.
    e = try loadError(images: labels, labels: labels)
    XCTAssertEqual(
      e,
      .badMagic(file: "train-images-idx3-ubyte", found: 0x801, expected: 0x803, kind: "IDX images"))
    e = try loadError(
      images: idxImages(count: 2, height: 2, width: 2, pixels: pixels),
      labels: idxLabels([1, 2], magic: 0x0000_0803))
    XCTAssertEqual(
      e,
      .badMagic(file: "train-labels-idx1-ubyte", found: 0x803, expected: 0x801, kind: "IDX labels"))
  }

  func testRejectsTruncatedAndOversizedFiles() throws {
    let full = idxImages(count: 2, height: 4, width: 4, pixels: testPixels(32, seed: 3))
    let labels = idxLabels([1, 2])
    var e = try loadError(images: Array(full.dropLast(5)), labels: labels)
    XCTAssertEqual(
      e,
      .truncated(file: "train-images-idx3-ubyte", size: 43, expected: 48, what: "2 images of 4x4"))
    XCTAssertEqual(
      e?.description,
      "train-images-idx3-ubyte: truncated: 43 bytes, expected 48 for 2 images of 4x4")
    // Cut inside the header, inside the magic number, and to nothing.
    for cut in [10, 3, 0] {
      e = try loadError(images: Array(full.prefix(cut)), labels: labels)
      guard case .truncated(let file, let size, _, _)? = e else {
        XCTFail("cut at \(cut): \(String(describing: e))")
        continue
      }
      XCTAssertEqual(file, "train-images-idx3-ubyte")
      XCTAssertEqual(size, cut)
    }
    // A gzipped file whose decompressed contents are short.
    e = try loadError(
      images: try Gzip.compress(Array(full.dropLast())), labels: labels, gzipImages: true)
    XCTAssertEqual(
      e,
      .truncated(
        file: "train-images-idx3-ubyte.gz", size: 47, expected: 48, what: "2 images of 4x4"))
    e = try loadError(images: full + [0], labels: labels)
    XCTAssertEqual(
      e,
      .trailingData(
        file: "train-images-idx3-ubyte", size: 49, expected: 48, what: "2 images of 4x4"))
    e = try loadError(images: full, labels: Array(labels.dropLast()))
    XCTAssertEqual(
      e, .truncated(file: "train-labels-idx1-ubyte", size: 9, expected: 10, what: "2 labels"))
  }

  func testRejectsAbsurdAndEmptyDimensions() throws {
    let labels = idxLabels([1])
    var e = try loadError(
      images: idxImages(count: 1, height: 0, width: 28, pixels: []), labels: labels)
    XCTAssertEqual(e, .invalidHeader(file: "train-images-idx3-ubyte", reason: "image size 0x28"))
    // 4 billion images of 65535×65535 must be refused from the header alone.
    e = try loadError(
      images: idxImages(count: 0xFFFF_FFFF, height: 0xFFFF, width: 0xFFFF, pixels: [1, 2, 3]),
      labels: labels)
    guard case .invalidHeader(let file, let reason)? = e else {
      return XCTFail("\(String(describing: e))")
    }
    XCTAssertEqual(file, "train-images-idx3-ubyte")
    XCTAssertTrue(reason.contains("implausibly large"), reason)
  }

  func testRejectsCountMismatchAndLabelsOutOfRange() throws {
    let images = idxImages(count: 3, height: 2, width: 2, pixels: testPixels(12, seed: 4))
    var e = try loadError(images: images, labels: idxLabels([1, 2]))
    XCTAssertEqual(
      e,
      .countMismatch(
        images: "train-images-idx3-ubyte", imageCount: 3, labels: "train-labels-idx1-ubyte",
        labelCount: 2))
    XCTAssertEqual(
      e?.description, "train-images-idx3-ubyte: 3 images but train-labels-idx1-ubyte has 2 labels")
    e = try loadError(images: images, labels: idxLabels([1, 10, 2]))
    XCTAssertEqual(
      e, .labelOutOfRange(file: "train-labels-idx1-ubyte", index: 1, label: 10, classes: 10))
  }

  func testRejectsCorruptGzip() throws {
    let images = idxImages(count: 8, height: 8, width: 8, pixels: testPixels(512, seed: 5))
    let gz = try Gzip.compress(images)
    let labels = idxLabels([UInt8](repeating: 3, count: 8))
    var e = try loadError(images: Array(gz.prefix(gz.count / 2)), labels: labels, gzipImages: true)
    guard case .corruptCompression(let file, let reason)? = e else {
      return XCTFail("\(String(describing: e))")
    }
    XCTAssertEqual(file, "train-images-idx3-ubyte.gz")
    XCTAssertTrue(reason.contains("truncated"), reason)
    var damaged = gz
    damaged[gz.count / 2] ^= 0x55
    e = try loadError(images: damaged, labels: labels, gzipImages: true)
    guard case .corruptCompression? = e else { return XCTFail("\(String(describing: e))") }
  }

  func testMissingFilesAndDirectoriesAreReported() throws {
    let directory = try makeTemporaryDirectory()
    _ = try writeTiny(in: directory, gzip: false)
    try FileManager.default.removeItem(
      at: directory.appendingPathComponent("train-labels-idx1-ubyte"))
    let e = expectDatasetError("labels missing") {
      _ = try ImageDataset.mnist(directory: directory, split: .train)
    }
    XCTAssertEqual(
      e,
      .fileNotFound(
        path: directory.appendingPathComponent("train-labels-idx1-ubyte").path + "[.gz]"))
    // A directory where a file should be.
    try FileManager.default.createDirectory(
      at: directory.appendingPathComponent("train-labels-idx1-ubyte"),
      withIntermediateDirectories: false)
    let d = expectDatasetError("directory as labels") {
      _ = try ImageDataset.mnist(directory: directory, split: .train)
    }
    XCTAssertEqual(d, .unreadable(file: "train-labels-idx1-ubyte", reason: "not a regular file"))
  }

  func testFollowsSymbolicLinksAndRefusesHugeFiles() throws {
    let real = try makeTemporaryDirectory()
    let pixels = try writeTiny(in: real, gzip: true)
    let linked = try makeTemporaryDirectory()
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
      try FileManager.default.createSymbolicLink(
        at: linked.appendingPathComponent(name),
        withDestinationURL: real.appendingPathComponent(name))
    }
    XCTAssertEqual(try ImageDataset.mnist(directory: linked, split: .train).images, pixels)

    // A sparse file just over the 1 GiB limit is refused before it is read.
    let huge = real.appendingPathComponent("train-images-idx3-ubyte.gz")
    let handle = try FileHandle(forWritingTo: huge)
    try handle.truncate(atOffset: (1 << 30) + 1)
    try handle.close()
    let e = expectDatasetError("huge file") {
      _ = try ImageDataset.mnist(directory: real, split: .train)
    }
    XCTAssertEqual(
      e, .tooLarge(file: "train-images-idx3-ubyte.gz", bytes: (1 << 30) + 1, limit: 1 << 30))
  }

  func testDataSetInitValidates() {
    expectDatasetError("too few pixels") {
      _ = try ImageDataset(
        name: "x", images: [1, 2, 3], labels: [0], channels: 1, height: 2, width: 2, classes: 2)
    }
    expectDatasetError("label out of range") {
      _ = try ImageDataset(
        name: "x", images: [1, 2, 3, 4], labels: [2], channels: 1, height: 2, width: 2, classes: 2)
    }
    expectDatasetError("zero width") {
      _ = try ImageDataset(
        name: "x", images: [], labels: [], channels: 1, height: 2, width: 0, classes: 2)
    }
  }
}
