import Foundation

/// Reads the binary versions of CIFAR-10 and CIFAR-100 (raw, or gzip-compressed with the same
/// layout).
///
/// A file is a sequence of records: CIFAR-10 has one label byte then 3072 pixel bytes; CIFAR-100
/// has a coarse label byte (20 superclasses), a fine label byte (100 classes), then the pixels.
/// The pixels are 32×32 red, then green, then blue, rows top to bottom, which is already the
/// channel-planar layout of `ImageDataset`. Every defect throws a `DatasetError` naming the file.
public enum CIFARReader {
  /// Pixel bytes per record: 3 channels of 32×32.
  public static let imageBytes = 3 * 32 * 32

  /// Which file layout and which labels to read.
  public enum Variant: Sendable, Equatable {
    /// One label byte per record, 10 classes.
    case cifar10
    /// Coarse then fine label bytes; `fine` selects the 100 fine classes, otherwise the 20
    /// coarse superclasses.
    case cifar100(fine: Bool)

    /// Bytes per record, labels included.
    public var recordSize: Int { self == .cifar10 ? imageBytes + 1 : imageBytes + 2 }
    /// The number of classes of the labels read.
    public var classes: Int {
      switch self {
      case .cifar10: return 10
      case .cifar100(let fine): return fine ? 100 : 20
      }
    }
  }

  /// The concatenated records of `files` as one data set of 3×32×32 images.
  public static func read(files: [URL], variant: Variant, name: String) throws -> ImageDataset {
    var pixels: [UInt8] = []
    var labels: [Int] = []
    for url in files {
      let part = try parse(DataFile.load(url), file: url.lastPathComponent, variant: variant)
      pixels += part.pixels
      labels += part.labels
    }
    return try ImageDataset(
      name: name, images: pixels, labels: labels, channels: 3, height: 32, width: 32,
      classes: variant.classes)
  }

  /// The records of one file's bytes as stored (raw or gzipped); `file` names it in errors.
  public static func records(fromFileContents bytes: [UInt8], file: String, variant: Variant)
    throws -> (pixels: [UInt8], labels: [Int])
  {
    try parse(DataFile.contents(bytes, file: file), file: file, variant: variant)
  }

  static func parse(_ bytes: [UInt8], file: String, variant: Variant) throws -> (
    pixels: [UInt8], labels: [Int]
  ) {
    let record = variant.recordSize
    guard !bytes.isEmpty, bytes.count % record == 0 else {
      throw DatasetError.partialRecord(file: file, size: bytes.count, recordSize: record)
    }
    let count = bytes.count / record
    var pixels: [UInt8] = []
    pixels.reserveCapacity(count * imageBytes)
    var labels: [Int] = []
    labels.reserveCapacity(count)
    for i in 0..<count {
      let start = i * record
      switch variant {
      case .cifar10:
        let label = Int(bytes[start])
        guard label < 10 else {
          throw DatasetError.labelOutOfRange(file: file, index: i, label: label, classes: 10)
        }
        labels.append(label)
      case .cifar100(let fine):
        // Both labels are checked: either being out of range means the file is damaged.
        let coarse = Int(bytes[start])
        let fineLabel = Int(bytes[start + 1])
        guard coarse < 20 else {
          throw DatasetError.labelOutOfRange(file: file, index: i, label: coarse, classes: 20)
        }
        guard fineLabel < 100 else {
          throw DatasetError.labelOutOfRange(file: file, index: i, label: fineLabel, classes: 100)
        }
        labels.append(fine ? fineLabel : coarse)
      }
      pixels += bytes[(start + record - imageBytes)..<(start + record)]
    }
    return (pixels, labels)
  }

  /// `name` in `directory`, or in the folder the official archive unpacks to inside it.
  static func locate(_ name: String, in directory: URL, archiveFolder: String) throws -> URL {
    do {
      return try DataFile.locate(name, in: directory)
    } catch let error as DatasetError {
      let nested = directory.appendingPathComponent(archiveFolder)
      guard let url = try? DataFile.locate(name, in: nested) else { throw error }
      return url
    }
  }
}

extension ImageDataset {
  /// CIFAR-10 (binary version) from `directory` or its `cifar-10-batches-bin` folder:
  /// `data_batch_1.bin` … `data_batch_5.bin` for training, `test_batch.bin` for testing.
  /// 3×32×32 images, 10 classes.
  public static func cifar10(directory: URL, split: Split) throws -> ImageDataset {
    let names =
      split == .train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"]
    let files = try names.map {
      try CIFARReader.locate($0, in: directory, archiveFolder: "cifar-10-batches-bin")
    }
    return try CIFARReader.read(files: files, variant: .cifar10, name: "cifar10/\(split.rawValue)")
  }

  /// CIFAR-100 (binary version) from `directory` or its `cifar-100-binary` folder: `train.bin` or
  /// `test.bin`. 3×32×32 images labelled with the 100 fine classes, or with the 20 coarse
  /// superclasses when `fine` is false.
  public static func cifar100(directory: URL, split: Split, fine: Bool = true) throws
    -> ImageDataset
  {
    let file = try CIFARReader.locate(
      "\(split.rawValue).bin", in: directory, archiveFolder: "cifar-100-binary")
    return try CIFARReader.read(
      files: [file], variant: .cifar100(fine: fine),
      name: "cifar100\(fine ? "" : "-coarse")/\(split.rawValue)")
  }
}
