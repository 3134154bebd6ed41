import Foundation

/// Reads the IDX files of MNIST and Fashion-MNIST (`train-images-idx3-ubyte`,
/// `train-labels-idx1-ubyte`, `t10k-…`), raw or gzip-compressed.
///
/// An images file is the big-endian words 0x00000803 (unsigned bytes, 3 dimensions), count, rows,
/// columns, then count·rows·columns pixels; a labels file is 0x00000801, count, then count label
/// bytes. Files must have exactly the size their header implies. Every defect throws a
/// `DatasetError` naming the file.
public enum IDXReader {
  /// The magic number of an IDX file of unsigned bytes with 3 dimensions (images).
  public static let imagesMagic: UInt32 = 0x0000_0803
  /// The magic number of an IDX file of unsigned bytes with 1 dimension (labels).
  public static let labelsMagic: UInt32 = 0x0000_0801

  /// The images of an IDX3 file: their number, size, and `count × height × width` pixels.
  public static func readImages(at url: URL) throws -> (
    count: Int, height: Int, width: Int, pixels: [UInt8]
  ) {
    let file = url.lastPathComponent
    return try parseImages(DataFile.load(url) { try imagesDeclaredSize($0, file) }, file: file)
  }

  /// `readImages(at:)` for a file's bytes as stored (raw or gzipped); `file` names it in errors.
  public static func images(fromFileContents bytes: [UInt8], file: String) throws -> (
    count: Int, height: Int, width: Int, pixels: [UInt8]
  ) {
    try parseImages(
      DataFile.contents(bytes, file: file) { try imagesDeclaredSize($0, file) }, file: file)
  }

  /// The labels of an IDX1 file, each checked to be in `0..<classes`.
  public static func readLabels(at url: URL, classes: Int = 10) throws -> [Int] {
    let file = url.lastPathComponent
    return try parseLabels(
      DataFile.load(url) { try labelsDeclaredSize($0, file) }, file: file, classes: classes)
  }

  /// `readLabels(at:classes:)` for a file's bytes as stored (raw or gzipped).
  public static func labels(fromFileContents bytes: [UInt8], file: String, classes: Int = 10)
    throws -> [Int]
  {
    try parseLabels(
      DataFile.contents(bytes, file: file) { try labelsDeclaredSize($0, file) }, file: file,
      classes: classes)
  }

  /// The whole size an images file declares, once its first 16 bytes are known.
  private static func imagesDeclaredSize(_ prefix: [UInt8], _ file: String) throws -> Int? {
    prefix.count < 16 ? nil : 16 + (try imagesSize(prefix, file: file))
  }

  /// The whole size a labels file declares, once its first 8 bytes are known.
  private static func labelsDeclaredSize(_ prefix: [UInt8], _ file: String) throws -> Int? {
    guard prefix.count >= 8 else { return nil }
    try checkMagic(prefix, file: file, expected: labelsMagic, kind: "IDX labels")
    return 8 + Int(prefix.bigEndianUInt32(at: 4))
  }

  /// The single-channel data set made of an images file and its labels file.
  public static func dataset(images: URL, labels: URL, name: String, classes: Int = 10) throws
    -> ImageDataset
  {
    let x = try readImages(at: images)
    let y = try readLabels(at: labels, classes: classes)
    guard x.count == y.count else {
      throw DatasetError.countMismatch(
        images: images.lastPathComponent, imageCount: x.count, labels: labels.lastPathComponent,
        labelCount: y.count)
    }
    return try ImageDataset(
      name: name, images: x.pixels, labels: y, channels: 1, height: x.height, width: x.width,
      classes: classes)
  }

  static func parseImages(_ bytes: [UInt8], file: String) throws -> (
    count: Int, height: Int, width: Int, pixels: [UInt8]
  ) {
    try checkMagic(bytes, file: file, expected: imagesMagic, kind: "IDX images")
    guard bytes.count >= 16 else {
      throw DatasetError.truncated(
        file: file, size: bytes.count, expected: 16, what: "the IDX images header")
    }
    let count = Int(bytes.bigEndianUInt32(at: 4))
    let height = Int(bytes.bigEndianUInt32(at: 8))
    let width = Int(bytes.bigEndianUInt32(at: 12))
    let total = try imagesSize(bytes, file: file)
    try checkSize(
      bytes, file: file, expected: 16 + total, what: "\(count) images of \(height)x\(width)")
    return (count, height, width, Array(bytes[16...]))
  }

  /// The pixel bytes the images header at the start of `bytes` (16 bytes or more) declares,
  /// after checking its magic number and that the size is plausible.
  static func imagesSize(_ bytes: [UInt8], file: String) throws -> Int {
    try checkMagic(bytes, file: file, expected: imagesMagic, kind: "IDX images")
    let count = Int(bytes.bigEndianUInt32(at: 4))
    let height = Int(bytes.bigEndianUInt32(at: 8))
    let width = Int(bytes.bigEndianUInt32(at: 12))
    guard height > 0, width > 0 else {
      throw DatasetError.invalidHeader(file: file, reason: "image size \(height)x\(width)")
    }
    let (pixels, o1) = height.multipliedReportingOverflow(by: width)
    let (total, o2) = pixels.multipliedReportingOverflow(by: count)
    guard !(o1 || o2), total <= DataFile.defaultLimit else {
      throw DatasetError.invalidHeader(
        file: file, reason: "\(count) images of \(height)x\(width) is implausibly large")
    }
    return total
  }

  static func parseLabels(_ bytes: [UInt8], file: String, classes: Int) throws -> [Int] {
    try checkMagic(bytes, file: file, expected: labelsMagic, kind: "IDX labels")
    guard bytes.count >= 8 else {
      throw DatasetError.truncated(
        file: file, size: bytes.count, expected: 8, what: "the IDX labels header")
    }
    let count = Int(bytes.bigEndianUInt32(at: 4))
    try checkSize(bytes, file: file, expected: 8 + count, what: "\(count) labels")
    let labels = bytes[8...].map(Int.init)
    if let i = labels.firstIndex(where: { $0 >= classes }) {
      throw DatasetError.labelOutOfRange(file: file, index: i, label: labels[i], classes: classes)
    }
    return labels
  }

  private static func checkMagic(_ bytes: [UInt8], file: String, expected: UInt32, kind: String)
    throws
  {
    guard bytes.count >= 4 else {
      throw DatasetError.truncated(
        file: file, size: bytes.count, expected: 4, what: "the magic number")
    }
    let magic = bytes.bigEndianUInt32(at: 0)
    guard magic == expected else {
      throw DatasetError.badMagic(file: file, found: magic, expected: expected, kind: kind)
    }
  }

  private static func checkSize(_ bytes: [UInt8], file: String, expected: Int, what: String)
    throws
  {
    if bytes.count < expected {
      throw DatasetError.truncated(file: file, size: bytes.count, expected: expected, what: what)
    }
    if bytes.count > expected {
      throw DatasetError.trailingData(
        file: file, size: bytes.count, expected: expected, what: what)
    }
  }
}

extension ImageDataset {
  /// MNIST (or Fashion-MNIST, which shares the layout) from `directory`: the files
  /// `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` (or `t10k-…` for the test split),
  /// each raw or gzip-compressed with a `.gz` suffix. 1×28×28 images, 10 classes.
  public static func mnist(directory: URL, split: Split, name: String = "mnist") throws
    -> ImageDataset
  {
    let prefix = split == .train ? "train" : "t10k"
    let images = try DataFile.locate("\(prefix)-images-idx3-ubyte", in: directory)
    let labels = try DataFile.locate("\(prefix)-labels-idx1-ubyte", in: directory)
    return try IDXReader.dataset(
      images: images, labels: labels, name: "\(name)/\(split.rawValue)", classes: 10)
  }
}

extension [UInt8] {
  /// The big-endian 32-bit word at `offset`; the caller checks the bounds.
  fileprivate func bigEndianUInt32(at offset: Int) -> UInt32 {
    self[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
  }
}
