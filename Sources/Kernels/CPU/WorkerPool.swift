import CSIMDSupport
import Foundation
import Synchronization

/// Threads that stay awake between operations to run `parallelFor`'s chunks.
///
/// A training step on the CPU backend is hundreds of parallel operations of tens of
/// microseconds each. Waking a sleeping thread for each (what `DispatchQueue.concurrentPerform`
/// does once its threads have gone idle) costs a futex wake and two context switches per
/// operation, and the wake-up's latency on top. These workers spin for 100 µs after each job, so
/// that the next job usually finds them awake, and then sleep on a condition until one arrives:
/// ODE-Net's MNIST training ran 14.4 s an epoch against 18.1 s with `concurrentPerform`, and
/// `bench solvers`' rk4_adjoint 0.61 s against 0.70 s.
///
/// One job runs at a time. A `run` that finds the pool busy (a `parallelFor` nested in another,
/// or one on a second thread) runs its chunks on its own thread, in order.
package final class WorkerPool: @unchecked Sendable {
  // @unchecked: `body` is the one non-atomic field shared. The caller that holds `busy` writes it
  // before the store to `ticket` that publishes a job and clears it after every chunk has
  // completed; a worker reads it only between claiming a chunk (a compare-exchange on `ticket`
  // that acquires that store) and reporting the chunk complete.

  package static let shared = WorkerPool(threads: hostCores - 1)

  /// How long a worker spins after a job before it sleeps, and the caller waits for the last
  /// chunks before it yields its core to them.
  private static let spinNanoseconds: UInt64 = 100_000

  private let threads: Int
  private let busy = Atomic<Bool>(false)
  /// The current job's generation (high 32 bits) and its next unclaimed chunk (low 32 bits).
  private let ticket = Atomic<UInt64>(0)
  private let chunkCount = Atomic<Int>(0)
  private let completed = Atomic<Int>(0)
  private let sleepers = Atomic<Int>(0)
  private let wake = NSCondition()
  private var body: ((Int) -> Void)?

  private init(threads: Int) {
    self.threads = max(0, threads)
    for _ in 0..<self.threads {
      let thread = Thread { [self] in workerLoop() }
      thread.start()
    }
  }

  /// Calls `body(i)` once for every i in 0..<count, on this thread and the workers, and returns
  /// when all calls have returned.
  package func run(_ count: Int, _ body: (Int) -> Void) {
    guard count > 1, threads > 0,
      busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    else {
      for i in 0..<count { body(i) }
      return
    }
    withoutActuallyEscaping(body) { body in
      self.body = body
      chunkCount.store(count, ordering: .relaxed)
      completed.store(0, ordering: .relaxed)
      // 32 bits, wrapping: workers compare generations for equality only.
      let generation = ((ticket.load(ordering: .relaxed) >> 32) &+ 1) & 0xFFFF_FFFF
      // Sequentially consistent with the sleepers' count: either a worker going to sleep sees
      // this generation, or this thread sees it asleep and wakes it.
      ticket.store(generation << 32, ordering: .sequentiallyConsistent)
      if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
        wake.lock()
        wake.broadcast()
        wake.unlock()
      }
      runChunks(of: generation)
      // The workers' last chunks: spin, then yield in case one of them waits for this core.
      spin(until: { completed.load(ordering: .acquiring) == count }, orElse: { sched_yield() })
      self.body = nil
    }
    busy.store(false, ordering: .releasing)
  }

  /// Claims and runs chunks of job `generation` until none is left (or a newer job has begun,
  /// which means this one has none left).
  private func runChunks(of generation: UInt64) {
    var current = ticket.load(ordering: .acquiring)
    while current >> 32 == generation,
      Int(current & 0xFFFF_FFFF) < chunkCount.load(ordering: .relaxed)
    {
      let (claimed, seen) = ticket.compareExchange(
        expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
      if claimed {
        body!(Int(current & 0xFFFF_FFFF))
        completed.add(1, ordering: .releasing)
        current += 1
      } else {
        current = seen
      }
    }
  }

  private func workerLoop() {
    var seen: UInt64 = 0
    while true {
      spin(
        until: { ticket.load(ordering: .acquiring) >> 32 != seen },
        orElse: {
          wake.lock()
          sleepers.add(1, ordering: .sequentiallyConsistent)
          while ticket.load(ordering: .sequentiallyConsistent) >> 32 == seen { wake.wait() }
          sleepers.subtract(1, ordering: .sequentiallyConsistent)
          wake.unlock()
        })
      seen = ticket.load(ordering: .acquiring) >> 32
      runChunks(of: seen)
    }
  }

  /// Spins until `done()` holds; past `spinNanoseconds`, calls `wait()` between checks instead.
  private func spin(until done: () -> Bool, orElse wait: () -> Void) {
    let deadline = DispatchTime.now().uptimeNanoseconds + Self.spinNanoseconds
    var spins = 0
    while !done() {
      spins += 1
      if spins & 63 != 0 || DispatchTime.now().uptimeNanoseconds < deadline {
        diffeqnet_spin_pause()
      } else {
        wait()
      }
    }
  }
}
