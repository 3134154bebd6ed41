/// Random training-time transformations applied by `BatchLoader`, in torchvision's order and
/// semantics: `RandomCrop(size, padding: cropPadding)` then `RandomHorizontalFlip()`.
///
/// The random draws of a batch come from a generator seeded by (loader seed, epoch, batch index),
/// so a batch is the same however and whenever it is produced.
public struct Augmentation: Sendable, Equatable, Codable {
  /// Pads each image with this many black pixels (value 0, before normalisation) on every side
  /// and takes the original-sized window at a uniformly random offset; 0 disables cropping.
  public var cropPadding: Int
  /// Mirrors each image left to right with probability 1/2 (after cropping).
  public var horizontalFlip: Bool

  public init(cropPadding: Int = 0, horizontalFlip: Bool = false) {
    self.cropPadding = cropPadding
    self.horizontalFlip = horizontalFlip
  }

  /// No augmentation: batches hold the images as they are.
  public static let disabled = Augmentation()
  /// The usual CIFAR recipe: 4-pixel padded random crops and random horizontal flips.
  public static let cifar = Augmentation(cropPadding: 4, horizontalFlip: true)

  func validate(height: Int, width: Int) throws {
    // Beyond the image size a crop could be entirely padding; that is never what was meant.
    guard cropPadding >= 0, cropPadding <= min(height, width) else {
      throw DatasetError.invalidArgument(
        "augmentation: crop padding \(cropPadding) must be in 0...\(min(height, width))")
    }
  }
}
