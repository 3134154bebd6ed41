import Foundation

/// Produces the batches of one epoch on a background thread, at most `depth` ahead of the
/// consumer, so that assembling the next batch overlaps the computation on the current one.
///
/// Yields exactly the batches of `loader.batches(epoch:startingAt:)`, in order. Iterate it from
/// one thread. Dropping it before the end stops the background thread.
public final class Prefetcher: Sequence, IteratorProtocol {
  private let queue: BatchQueue

  public init(_ loader: BatchLoader, epoch: Int, startingAt first: Int = 0, depth: Int = 2) {
    let queue = BatchQueue(capacity: Swift.max(1, depth))
    self.queue = queue
    let batches = loader.batches(epoch: epoch, startingAt: first)
    let thread = Thread {
      for batch in batches {
        guard queue.put(batch) else { return }
      }
      queue.finish()
    }
    thread.name = "DiffEqNet.Prefetcher"
    thread.start()
  }

  /// The next batch, waiting for it if it is not ready; nil after the last.
  public func next() -> Batch? { queue.take() }

  deinit { queue.cancel() }
}

/// A bounded first-in first-out hand-over from the producer thread to the consumer.
///
/// `@unchecked Sendable`: the mutable state is only touched with `condition` locked.
private final class BatchQueue: @unchecked Sendable {
  private let condition = NSCondition()
  private let capacity: Int
  private var items: [Batch] = []
  private var finished = false
  private var cancelled = false

  init(capacity: Int) { self.capacity = capacity }

  /// Appends `batch`, waiting while the queue is full; false once the consumer has gone.
  func put(_ batch: Batch) -> Bool {
    condition.lock()
    defer { condition.unlock() }
    while items.count >= capacity && !cancelled { condition.wait() }
    guard !cancelled else { return false }
    items.append(batch)
    condition.broadcast()
    return true
  }

  /// Marks the end of the batches.
  func finish() {
    condition.lock()
    finished = true
    condition.broadcast()
    condition.unlock()
  }

  /// Wakes and stops the producer; the consumer will take nothing more.
  func cancel() {
    condition.lock()
    cancelled = true
    items.removeAll()
    condition.broadcast()
    condition.unlock()
  }

  /// The oldest batch, waiting for one; nil when the producer has finished and all are taken.
  func take() -> Batch? {
    condition.lock()
    defer { condition.unlock() }
    while items.isEmpty && !finished && !cancelled { condition.wait() }
    guard !items.isEmpty else { return nil }
    let batch = items.removeFirst()
    condition.broadcast()
    return batch
  }
}
