/// The batches of one epoch of a `BatchLoader`, from a starting batch to the end of the epoch.
public struct EpochBatches: Sequence, Sendable {
  public let loader: BatchLoader
  public let epoch: Int
  /// The batch indices produced, in order.
  public let range: Range<Int>
  private let order: [Int]

  init(loader: BatchLoader, epoch: Int, order: [Int], first: Int) {
    self.loader = loader
    self.epoch = epoch
    self.order = order
    let end = loader.batchesPerEpoch
    range = Swift.min(Swift.max(0, first), end)..<end
  }

  public var underestimatedCount: Int { range.count }

  public func makeIterator() -> Iterator { Iterator(batches: self, position: range.lowerBound) }

  public struct Iterator: IteratorProtocol {
    let batches: EpochBatches
    var position: Int

    public mutating func next() -> Batch? {
      guard position < batches.range.upperBound else { return nil }
      defer { position += 1 }
      return batches.loader.assemble(position, epoch: batches.epoch, order: batches.order)
    }
  }
}
