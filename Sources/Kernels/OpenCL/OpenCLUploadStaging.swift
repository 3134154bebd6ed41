import COpenCL
import Synchronization

/// Host copies of data on its way to the device, so that `OpenCLBackend.write` need not wait.
///
/// A non-blocking `clEnqueueWriteBuffer` reads its host memory at some later moment, but the
/// caller's bytes (a Swift array being uploaded) may be freed as soon as `write` returns. Each
/// write therefore copies its bytes into a block owned here and enqueues the transfer from that
/// block; the block is freed once the transfer's event reports completion. The queue is in
/// order, so blocks complete oldest first and reaping stops at the first one still pending.
///
/// Memory stays bounded: past `limitBytes` held, `hold` reports it so the backend can wait for
/// the queue (one host synchronisation) and release everything.
final class OpenCLUploadStaging: Sendable {
  /// A staged copy and the event of the transfer that reads it.
  private struct Block: @unchecked Sendable {
    let memory: UnsafeMutableRawPointer
    let byteCount: Int
    let event: cl_event
  }

  /// The most host memory held for uploads in flight before the backend waits for them.
  static let limitBytes = 256 << 20

  private let blocks = Mutex<(held: [Block], bytes: Int)>(([], 0))

  /// Bytes held for transfers that may not have completed.
  var heldBytes: Int { blocks.withLock { $0.bytes } }

  /// A fresh block holding a copy of `bytes`, for the caller to enqueue a transfer from and
  /// then pass to `hold` (or `discard` if the enqueue failed).
  func copy(_ bytes: UnsafeRawBufferPointer) -> UnsafeMutableRawPointer {
    let memory = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
    if let base = bytes.baseAddress { memory.copyMemory(from: base, byteCount: bytes.count) }
    return memory
  }

  func discard(_ memory: UnsafeMutableRawPointer) { memory.deallocate() }

  /// Keeps `memory` until `event` completes, after freeing the blocks already transferred.
  /// Returns whether more than `limitBytes` are now held.
  func hold(_ memory: UnsafeMutableRawPointer, byteCount: Int, until event: cl_event) -> Bool {
    blocks.withLock {
      Self.reapCompleted(&$0)
      $0.held.append(Block(memory: memory, byteCount: byteCount, event: event))
      $0.bytes += byteCount
      return $0.bytes > Self.limitBytes
    }
  }

  /// Frees the blocks whose transfers have completed.
  func reap() { blocks.withLock { Self.reapCompleted(&$0) } }

  /// Frees every block. Only after the queue has finished (`clFinish`), so no transfer still
  /// reads them.
  func releaseAll() {
    blocks.withLock {
      for block in $0.held { Self.free(block) }
      $0 = ([], 0)
    }
  }

  private static func reapCompleted(_ state: inout (held: [Block], bytes: Int)) {
    var done = 0
    for block in state.held {
      var status: cl_int = CL_QUEUED
      let code = clGetEventInfo(
        block.event, cl_event_info(CL_EVENT_COMMAND_EXECUTION_STATUS),
        MemoryLayout<cl_int>.size, &status, nil)
      // A negative status is a failed transfer: it no longer reads the block either, and the
      // queue reports the failure at the next call that checks.
      guard code == CL_SUCCESS, status == CL_COMPLETE || status < 0 else { break }
      free(block)
      state.bytes -= block.byteCount
      done += 1
    }
    state.held.removeFirst(done)
  }

  private static func free(_ block: Block) {
    clReleaseEvent(block.event)
    block.memory.deallocate()
  }
}
