/// Per-channel standardisation of 8-bit pixels: a pixel p of channel c becomes
/// `(p / 255 − mean[c]) / std[c]`, as torchvision's `ToTensor` followed by `Normalize` computes.
///
/// `mean` and `std` hold one value per channel, or a single value used for every channel.
public struct Normalization: Sendable, Equatable, Codable {
  public var mean: [Double]
  public var std: [Double]

  public init(mean: [Double], std: [Double]) {
    self.mean = mean
    self.std = std
  }

  /// Pixels scaled to [0, 1] and not shifted.
  public static let identity = Normalization(mean: [0], std: [1])
  /// MNIST's training-set mean and standard deviation.
  public static let mnist = Normalization(mean: [0.1307], std: [0.3081])
  /// CIFAR-10's training-set per-channel (RGB) mean and standard deviation.
  public static let cifar10 = Normalization(
    mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616])
  /// CIFAR-100's training-set per-channel (RGB) mean and standard deviation.
  public static let cifar100 = Normalization(
    mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762])

  /// The per-channel mean and (population) standard deviation of `dataset`'s pixels on the
  /// [0, 1] scale; a constant channel gets std 1 so that it maps to zero rather than dividing by 0.
  public static func computed(from dataset: ImageDataset) -> Normalization {
    let plane = dataset.height * dataset.width
    var sums = [Double](repeating: 0, count: dataset.channels)
    var squares = sums
    for (i, p) in dataset.images.enumerated() {
      let c = (i / plane) % dataset.channels
      let x = Double(p) / 255
      sums[c] += x
      squares[c] += x * x
    }
    let n = Double(max(1, dataset.count * plane))
    let mean = sums.map { $0 / n }
    let std = zip(squares, mean).map { sq, m in
      let s = max(0, sq / n - m * m).squareRoot()
      return s > 0 ? s : 1
    }
    return Normalization(mean: mean, std: std)
  }

  /// Throws unless there is one value (or one per channel) and every std is positive and finite.
  func validate(channels: Int) throws {
    for (label, values) in [("mean", mean), ("std", std)] {
      guard values.count == 1 || values.count == channels else {
        throw DatasetError.invalidArgument(
          "normalization: \(values.count) \(label) values for \(channels) channels")
      }
    }
    guard mean.allSatisfy(\.isFinite), std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
      throw DatasetError.invalidArgument(
        "normalization: mean \(mean) must be finite and std \(std) positive")
    }
  }

  /// The normalised value of each of the 256 pixel values in `channel`.
  func table(channel: Int) -> [Float] {
    let m = mean.count == 1 ? mean[0] : mean[channel]
    let s = std.count == 1 ? std[0] : std[channel]
    return (0..<256).map { Float((Double($0) / 255 - m) / s) }
  }
}
