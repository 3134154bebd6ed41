/// A labelled image-classification data set held in memory as 8-bit pixels.
///
/// Loaded by `ImageDataset.mnist(directory:split:)`, `.cifar10(directory:split:)` and
/// `.cifar100(directory:split:fine:)`; batched for training by `BatchLoader`.
public struct ImageDataset: Sendable, Equatable {
  /// Which part of a data set: the training images or the held-out test images.
  public enum Split: String, Sendable, CaseIterable, Codable {
    case train, test
  }

  /// A short identifier such as `mnist/train`, for logs and checkpoint metadata.
  public let name: String
  /// `count × channels × height × width` pixels: image by image, each channel-planar (all of
  /// channel 0, then channel 1, …), rows top to bottom. 0 is black.
  public let images: [UInt8]
  /// The class of each image, in `0..<classes`.
  public let labels: [Int]
  public let channels: Int
  public let height: Int
  public let width: Int
  /// The number of classes labels are drawn from (some may be absent from a small subset).
  public let classes: Int

  /// The number of images.
  public var count: Int { labels.count }
  /// Pixels per image: `channels × height × width`.
  public var imageSize: Int { channels * height * width }

  /// A data set over the given pixels and labels; throws `DatasetError.invalidArgument` unless
  /// the dimensions are positive, `images` holds exactly `labels.count` images, and every label
  /// is in `0..<classes`.
  public init(
    name: String, images: [UInt8], labels: [Int], channels: Int, height: Int, width: Int,
    classes: Int
  ) throws {
    guard channels > 0, height > 0, width > 0, classes > 0 else {
      throw DatasetError.invalidArgument(
        "\(name): dimensions \(channels)x\(height)x\(width) and \(classes) classes must be positive"
      )
    }
    let (size, o1) = channels.multipliedReportingOverflow(by: height)
    let (imageSize, o2) = size.multipliedReportingOverflow(by: width)
    let (total, o3) = imageSize.multipliedReportingOverflow(by: labels.count)
    guard !(o1 || o2 || o3), images.count == total else {
      throw DatasetError.invalidArgument(
        "\(name): \(images.count) pixels for \(labels.count) images of "
          + "\(channels)x\(height)x\(width)")
    }
    if let i = labels.firstIndex(where: { !(0..<classes).contains($0) }) {
      throw DatasetError.invalidArgument(
        "\(name): label \(labels[i]) of example \(i) is outside 0..<\(classes)")
    }
    self.name = name
    self.images = images
    self.labels = labels
    self.channels = channels
    self.height = height
    self.width = width
    self.classes = classes
  }

  /// How many images each class has, indexed by class.
  public func classCounts() -> [Int] {
    var counts = [Int](repeating: 0, count: classes)
    for label in labels { counts[label] += 1 }
    return counts
  }
}
