import Foundation

/// Splits `0..<count` into contiguous chunks run on all cores, or runs it inline when the work is
/// too small to repay the hand-off (tiny tensors are the common case in small networks, and a
/// dispatch costs microseconds).
///
/// The chunks are fixed ranges whatever thread runs them, so results do not depend on timing.
/// `body` is not `@Sendable` because it captures raw buffer pointers; sharing it is sound because
/// `WorkerPool.run` returns only after every chunk has finished and callers write disjoint index
/// ranges per chunk.
@inline(__always)
func parallelFor(_ count: Int, grain: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
  let chunks = min(hostCores, count / max(1, grain))
  if chunks <= 1 {
    body(0..<count)
    return
  }
  let per = (count + chunks - 1) / chunks
  WorkerPool.shared.run(chunks) { c in
    let lo = c * per
    let hi = min(count, lo + per)
    if lo < hi { body(lo..<hi) }
  }
}

/// Read once: `activeProcessorCount` is a system call, too slow to repeat per operation.
let hostCores = ProcessInfo.processInfo.activeProcessorCount
