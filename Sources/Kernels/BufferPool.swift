import COpenCL
import Foundation
import Synchronization

/// A raw allocation owned by a backend: host memory for the CPU backend, a `cl_mem` for OpenCL.
///
/// `@unchecked Sendable`: a handle that the pool passes whole from one owner to the next (a live
/// `DeviceBuffer`, or the pool's free list under its mutex); nothing reads through it while it
/// moves.
public enum Allocation: @unchecked Sendable {
  case host(UnsafeMutableRawPointer)
  case openCL(cl_mem)

  /// The host address; only valid for the CPU backend.
  @inline(__always) public var host: UnsafeMutableRawPointer {
    guard case .host(let p) = self else { preconditionFailure("not a host allocation") }
    return p
  }

  /// The OpenCL memory object; only valid for OpenCL backends.
  @inline(__always) public var mem: cl_mem {
    guard case .openCL(let m) = self else { preconditionFailure("not an OpenCL allocation") }
    return m
  }
}

/// A caching allocator: freed buffers go to a free list keyed by their rounded size and are handed
/// out again, so a training loop that repeats the same shapes allocates from the system only once.
///
/// `currentBytes` counts bytes held by live `DeviceBuffer`s and `peakBytes` its maximum since the
/// last `resetPeak()`; cached free buffers count in neither. All state is in `state`, behind a
/// `Mutex` (a futex, not `NSLock`'s pthread mutex behind a class call: every tensor takes and
/// gives one buffer, and small networks make thousands per step), which is what makes the class
/// safe to share between threads.
public final class BufferPool: @unchecked Sendable {
  private struct State {
    /// Free lists of sizes below `smallLimit`, indexed by size / 256 (no hashing on the path
    /// every small op takes), and of larger sizes by size.
    var smallLists = [[Allocation]](repeating: [], count: BufferPool.smallLimit / 256 + 1)
    var largeLists: [Int: [Allocation]] = [:]
    var current = 0
    var peak = 0
    var cached = 0
  }
  private let state = Mutex(State())
  private static let smallLimit = 1 << 20
  private let systemAllocate: (Int) throws -> Allocation
  private let systemFree: (Allocation) -> Void

  public init(
    allocate: @escaping (Int) throws -> Allocation, free: @escaping (Allocation) -> Void
  ) {
    self.systemAllocate = allocate
    self.systemFree = free
  }

  deinit { trim() }

  /// Sizes are rounded to 256 bytes (small) or 64 KiB (large) so that nearby sizes share lists.
  /// The largest buffer the pool hands out (2⁵⁶ bytes): beyond any device, and far enough from
  /// Int.max that rounding a size up cannot overflow.
  public static let maxBytes = 1 << 56

  static func roundedSize(_ bytes: Int) -> Int {
    let granule = bytes < smallLimit ? 256 : (1 << 16)
    return max(granule, (bytes + granule - 1) / granule * granule)
  }

  /// Bytes held by live buffers.
  public var currentBytes: Int { state.withLock { $0.current } }
  /// The most bytes held by live buffers at once since the last `resetPeak()`.
  public var peakBytes: Int { state.withLock { $0.peak } }
  /// Bytes kept in free lists for reuse.
  public var cachedBytes: Int { state.withLock { $0.cached } }

  /// Starts a new peak measurement from the current level.
  public func resetPeak() { state.withLock { $0.peak = $0.current } }

  /// Returns all cached buffers to the system.
  public func trim() {
    let lists = state.withLock { s -> [[Allocation]] in
      let l = s.smallLists + Array(s.largeLists.values)
      s.smallLists = s.smallLists.map { _ in [] }
      s.largeLists = [:]
      s.cached = 0
      return l
    }
    for list in lists { for a in list { systemFree(a) } }
  }

  func take(_ bytes: Int) throws -> (Allocation, Int) {
    let size = Self.roundedSize(bytes)
    let reused: Allocation? = state.withLock { s in
      s.current += size
      s.peak = max(s.peak, s.current)
      // Popped in place: copying the list out and back would duplicate its storage every call.
      let popped =
        size <= Self.smallLimit ? s.smallLists[size >> 8].popLast() : s.largeLists[size]?.popLast()
      guard let a = popped else { return nil }
      s.cached -= size
      return a
    }
    if let reused { return (reused, size) }
    do {
      return (try systemAllocate(size), size)
    } catch {
      // Out of memory: release the cache and try once more before giving up.
      trim()
      do { return (try systemAllocate(size), size) } catch {
        state.withLock { $0.current -= size }
        throw error
      }
    }
  }

  func give(_ allocation: Allocation, size: Int) {
    state.withLock { s in
      s.current -= size
      s.cached += size
      if size <= Self.smallLimit {
        s.smallLists[size >> 8].append(allocation)
      } else {
        s.largeLists[size, default: []].append(allocation)
      }
    }
  }
}

/// Device memory for `count` elements of one `DType`, returned to its pool when the last reference
/// goes away. Backends read and write it only through their queue (OpenCL) or the calling thread
/// (CPU), so the object itself carries no synchronisation.
///
/// A buffer can also be a view of a range of another (`Backend.view(of:offset:count:dtype:)`):
/// it keeps that buffer alive, and writes through either are seen through the other.
public final class DeviceBuffer {
  public let allocation: Allocation
  /// The rounded size actually reserved (for a view, the view's size).
  public let byteCount: Int
  private let owner: Owner

  private enum Owner {
    case pool(BufferPool)
    /// The viewed buffer, and how to let go of the view's own handle (a sub-buffer).
    case view(of: DeviceBuffer, release: (Allocation) -> Void)
  }

  init(allocation: Allocation, byteCount: Int, pool: BufferPool) {
    self.allocation = allocation
    self.byteCount = byteCount
    self.owner = .pool(pool)
  }

  /// A view over `allocation`, which aliases part of `parent`.
  package init(
    view allocation: Allocation, byteCount: Int, of parent: DeviceBuffer,
    release: @escaping (Allocation) -> Void
  ) {
    self.allocation = allocation
    self.byteCount = byteCount
    self.owner = .view(of: parent, release: release)
  }

  deinit {
    switch owner {
    case .pool(let pool): pool.give(allocation, size: byteCount)
    case .view(_, let release): release(allocation)
    }
  }

  /// The buffer this one is a view of, if it is a view.
  public var viewedBuffer: DeviceBuffer? {
    if case .view(let parent, _) = owner { return parent }
    return nil
  }

  /// Typed host address (CPU backend only).
  @inline(__always) public func pointer<T>(_: T.Type) -> UnsafeMutablePointer<T> {
    allocation.host.assumingMemoryBound(to: T.self)
  }
}

extension BufferPool {
  /// A buffer for `count` elements of `dtype` (at least one element, so empty tensors are legal).
  /// A size beyond `maxBytes` is an error, not a wrapped product.
  public func buffer(_ count: Int, _ dtype: DType) throws -> DeviceBuffer {
    let (bytes, overflow) = max(1, count).multipliedReportingOverflow(by: dtype.size)
    guard !overflow, bytes <= Self.maxBytes else {
      throw BackendError.allocationTooLarge(elements: count, dtype: dtype)
    }
    let (a, size) = try take(bytes)
    return DeviceBuffer(allocation: a, byteCount: size, pool: self)
  }
}
