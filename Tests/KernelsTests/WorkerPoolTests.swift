import Dispatch
import Foundation
import Kernels
import Synchronization
import XCTest

/// The CPU backend's parallel operations run on persistent worker threads (`WorkerPool`). Through
/// a parallel element-wise square (262,144 floats, split in chunks over the cores) this checks
/// that every job runs each of its chunks once and only after its inputs are published: jobs
/// back to back (the workers spinning between them), after pauses longer than their spin (the
/// workers asleep, woken by the next job), and from two threads at once (one of them finds the
/// pool busy and runs its chunks itself). Every output must equal the serial result exactly.
final class WorkerPoolTests: XCTestCase {
  func testParallelOperationsFromTwoThreadsMatchTheSerialResult() throws {
    let backend = CPUBackend()
    let count = 1 << 18
    let threads = 2
    let rounds = 300
    let inputs = (0..<threads).map { t in
      (0..<count).map { i in Float(i % 977) * 0.01 - Float(t) }
    }
    let expected = inputs.map { $0.map { $0 * $0 } }
    let mismatches = Mutex(0)
    let failure = Mutex<String?>(nil)
    DispatchQueue.concurrentPerform(iterations: threads) { t in
      do {
        let x = try backend.allocate(count, .float32)
        let y = try backend.allocate(count, .float32)
        try inputs[t].withUnsafeBytes { try backend.write($0, to: x) }
        let poison = [Float](repeating: .nan, count: count)
        var out = [Float](repeating: 0, count: count)
        for round in 0..<rounds {
          try poison.withUnsafeBytes { try backend.write($0, to: y) }
          try backend.unary(.square, x, y, count: count, dtype: .float32)
          try out.withUnsafeMutableBytes { try backend.read(y, into: $0) }
          if out != expected[t] { mismatches.withLock { $0 += 1 } }
          // Now and then a pause longer than the workers' spin, so that they fall asleep.
          if round % 25 == 0 { usleep(500) }
        }
      } catch {
        failure.withLock { $0 = "\(error)" }
      }
    }
    XCTAssertNil(failure.withLock { $0 })
    XCTAssertEqual(mismatches.withLock { $0 }, 0, "rounds whose output differed from x²")
  }
}

/// `WorkerPool.run` itself, with bodies of uneven length: each index runs exactly once, `run`
/// returns only after the last of them has finished, the workers take part, and a `run` nested
/// in a body runs inline.
final class WorkerPoolRunTests: XCTestCase {
  func testEveryIndexRunsOnceAndBeforeRunReturns() {
    let pool = WorkerPool.shared
    let count = 8
    let threadIDs = Mutex<Set<UInt>>([])
    for round in 0..<200 {
      let runs = Mutex([Int](repeating: 0, count: count))
      let finished = Mutex([Bool](repeating: false, count: count))
      pool.run(count) { i in
        runs.withLock { $0[i] += 1 }
        // The last indices take longest, so a caller that stopped waiting early would see them
        // unfinished.
        if i >= count - 2 { usleep(UInt32(200 + 50 * (round % 4))) }
        threadIDs.withLock { $0.insert(UInt(pthread_self())) }
        finished.withLock { $0[i] = true }
      }
      XCTAssertEqual(runs.withLock { $0 }, [Int](repeating: 1, count: count), "round \(round)")
      XCTAssertEqual(
        finished.withLock { $0 }, [Bool](repeating: true, count: count), "round \(round)")
      if round % 50 == 0 { usleep(500) }  // let the workers fall asleep now and then
    }
    if ProcessInfo.processInfo.activeProcessorCount > 1 {
      XCTAssertGreaterThan(threadIDs.withLock { $0.count }, 1, "only the caller ran chunks")
    }
  }

  func testNestedRunRunsInline() {
    let inner = Mutex([Int](repeating: 0, count: 12))
    WorkerPool.shared.run(3) { i in
      WorkerPool.shared.run(4) { j in inner.withLock { $0[i * 4 + j] += 1 } }
    }
    XCTAssertEqual(inner.withLock { $0 }, [Int](repeating: 1, count: 12))
  }
}
