import Dispatch
import Foundation

/// Splits `0..<count` into contiguous chunks run on all cores, or runs it inline when the work is
/// too small to repay the hand-off (tiny tensors are the common case in small networks, and a
/// dispatch costs microseconds).
///
/// `body` is not `@Sendable` because it captures raw buffer pointers; sharing it is sound because
/// `concurrentPerform` returns only after every chunk has finished and callers write disjoint
/// index ranges per chunk.
@inline(__always)
func parallelFor(_ count: Int, grain: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
  let chunks = min(hostCores, count / max(1, grain))
  if chunks <= 1 {
    body(0..<count)
    return
  }
  let per = (count + chunks - 1) / chunks
  withoutActuallyEscaping(body) { body in
    let shared = UncheckedSendableBox(body)
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
      let lo = c * per
      let hi = min(count, lo + per)
      if lo < hi { shared.value(lo..<hi) }
    }
  }
}

/// Read once: `activeProcessorCount` is a system call, too slow to repeat per operation.
let hostCores = ProcessInfo.processInfo.activeProcessorCount

/// Carries a value across a concurrency boundary whose safety the caller argues for.
struct UncheckedSendableBox<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}
