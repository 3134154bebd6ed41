import DiffEqCore

/// Cuts an `ImageDataset` into normalised, optionally shuffled and augmented mini-batches.
///
/// Everything random is a pure function of `seed` and the batch's position: the order of epoch
/// e is `epochOrder(epoch: e)`, and batch b of epoch e draws its augmentation from a generator
/// seeded by (seed, e, b). A checkpoint therefore needs only `seed` and the position reached, and
/// `batches(epoch:startingAt:)` resumes the exact sequence, as does a `Prefetcher`.
public struct BatchLoader: Sendable {
  public let dataset: ImageDataset
  /// Images per batch; the last batch of an epoch may be smaller unless `dropLast`.
  public let batchSize: Int
  public let normalization: Normalization
  public let augmentation: Augmentation
  /// Whether each epoch visits the images in a fresh random order (otherwise in data-set order).
  public let shuffle: Bool
  /// Whether an epoch omits a final batch smaller than `batchSize`.
  public let dropLast: Bool
  /// The seed every random choice is derived from.
  public let seed: UInt64
  /// The normalised value of each pixel value, per channel.
  private let tables: [[Float]]

  /// A loader over `dataset`; throws `DatasetError.invalidArgument` for a non-positive batch
  /// size, normalisation values that do not fit the channels, or a crop padding outside
  /// 0...min(height, width).
  public init(
    _ dataset: ImageDataset, batchSize: Int, normalization: Normalization = .identity,
    augmentation: Augmentation = .disabled, shuffle: Bool = true, dropLast: Bool = false,
    seed: UInt64 = 0
  ) throws {
    guard batchSize > 0 else {
      throw DatasetError.invalidArgument("batch loader: batch size \(batchSize) must be positive")
    }
    try normalization.validate(channels: dataset.channels)
    try augmentation.validate(height: dataset.height, width: dataset.width)
    self.dataset = dataset
    self.batchSize = batchSize
    self.normalization = normalization
    self.augmentation = augmentation
    self.shuffle = shuffle
    self.dropLast = dropLast
    self.seed = seed
    tables = (0..<dataset.channels).map { normalization.table(channel: $0) }
  }

  /// The number of batches in every epoch.
  public var batchesPerEpoch: Int {
    // Written so that no batch size, up to Int.max, overflows.
    dataset.count / batchSize + (dropLast || dataset.count % batchSize == 0 ? 0 : 1)
  }

  /// The order in which epoch `epoch` visits the data set: a permutation of `0..<count` that
  /// depends only on `seed` and `epoch` (the identity when not shuffling).
  public func epochOrder(epoch: Int) -> [Int] {
    var order = Array(0..<dataset.count)
    guard shuffle else { return order }
    var rng = RandomState(seed: mix(mix(seed, Stream.order), UInt64(bitPattern: Int64(epoch))))
    // Fisher–Yates with our own bounded draw, so orders do not depend on how a Swift release
    // implements `shuffle(using:)`.
    for i in stride(from: order.count - 1, to: 0, by: -1) {
      order.swapAt(i, rng.below(i + 1))
    }
    return order
  }

  /// The batches of epoch `epoch` from batch `first` on, produced as they are iterated.
  public func batches(epoch: Int, startingAt first: Int = 0) -> EpochBatches {
    EpochBatches(loader: self, epoch: epoch, order: epochOrder(epoch: epoch), first: first)
  }

  /// Batch `index` of epoch `epoch` on its own (this recomputes the epoch's order: iterate
  /// `batches(epoch:)` for a whole epoch).
  public func batch(_ index: Int, epoch: Int) throws -> Batch {
    guard (0..<batchesPerEpoch).contains(index) else {
      throw DatasetError.invalidArgument(
        "batch loader: batch \(index) outside 0..<\(batchesPerEpoch)")
    }
    return assemble(index, epoch: epoch, order: epochOrder(epoch: epoch))
  }

  /// Batch `index` of an epoch visiting the images in `order`; `index` is in range.
  func assemble(_ index: Int, epoch: Int, order: [Int]) -> Batch {
    let start = index * batchSize
    let indices = Array(order[start..<min(start + batchSize, order.count)])
    let (c, h, w) = (dataset.channels, dataset.height, dataset.width)
    let plane = h * w
    let size = c * plane
    let pad = augmentation.cropPadding
    var rng = RandomState(
      seed: mix(
        mix(mix(seed, Stream.augmentation), UInt64(bitPattern: Int64(epoch))),
        UInt64(bitPattern: Int64(index))))
    var images = [Float](repeating: 0, count: indices.count * size)
    images.withUnsafeMutableBufferPointer { out in
      dataset.images.withUnsafeBufferPointer { pixels in
        for (k, i) in indices.enumerated() {
          // An offset of `pad` on both axes is the uncropped image.
          var (dy, dx, flip) = (pad, pad, false)
          if pad > 0 {
            dy = rng.below(2 * pad + 1)
            dx = rng.below(2 * pad + 1)
          }
          if augmentation.horizontalFlip { flip = rng.next() >> 63 == 1 }
          for ch in 0..<c {
            let table = tables[ch]
            let src = i * size + ch * plane
            let dst = k * size + ch * plane
            for y in 0..<h {
              let sy = y + dy - pad
              let row = dst + y * w
              guard sy >= 0 && sy < h else {
                for x in 0..<w { out[row + x] = table[0] }
                continue
              }
              for x in 0..<w {
                let sx = (flip ? w - 1 - x : x) + dx - pad
                out[row + x] = sx >= 0 && sx < w ? table[Int(pixels[src + sy * w + sx])] : table[0]
              }
            }
          }
        }
      }
    }
    return Batch(
      images: images, labels: indices.map { Float(dataset.labels[$0]) }, indices: indices,
      channels: c, height: h, width: w, epoch: epoch, index: index)
  }

  /// Tags that keep the order and augmentation streams of one seed independent.
  private enum Stream {
    static let order: UInt64 = 1
    static let augmentation: UInt64 = 2
  }
}

/// SplitMix64's finaliser over `a` combined with `b`: a seed for one (stream, epoch, batch).
private func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
  var z = a ^ ((b &+ 0x9E37_79B9_7F4A_7C15) &* 0xD6E8_FEB8_6659_FD93)
  z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
  z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
  return z ^ (z >> 31)
}

extension RandomState {
  /// Uniform in `0..<n` (n > 0) without modulo bias, by Lemire's multiply-and-reject method.
  fileprivate mutating func below(_ n: Int) -> Int {
    let bound = UInt64(n)
    var m = next().multipliedFullWidth(by: bound)
    if m.low < bound {
      let threshold = (0 &- bound) % bound
      while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
    }
    return Int(m.high)
  }
}
