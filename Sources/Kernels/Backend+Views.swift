// The argument checks that every backend's `view` and `pack` make.

/// The checks every backend's `view` makes: an error for a range outside the buffer or a
/// misaligned start, and no views of views (OpenCL has no sub-buffers of sub-buffers).
func checkView(
  of buffer: DeviceBuffer, offset: Int, count: Int, dtype: DType, backend: any Backend
) throws {
  guard buffer.viewedBuffer == nil else {
    throw BackendError.invalidView("a view of a view (view the underlying buffer)")
  }
  let (end, overflow) = offset.addingReportingOverflow(count)
  guard offset >= 0, count >= 0, !overflow, end * dtype.size <= buffer.byteCount else {
    throw BackendError.invalidView(
      "elements \(offset)..<\(offset &+ count) of a buffer of \(buffer.byteCount / dtype.size)")
  }
  guard (offset * dtype.size) % backend.viewAlignment == 0 else {
    throw BackendError.invalidView(
      "offset \(offset) is not a multiple of \(backend.viewAlignment) bytes on \(backend.name)")
  }
}

/// The preconditions of `Backend.pack`: matching lists, ranges that ascend without overlapping and
/// fit in `y` and in each source.
func checkPack(
  _ xs: [DeviceBuffer], counts: [Int], offsets: [Int], into y: DeviceBuffer, dtype: DType
) throws {
  precondition(
    xs.count == counts.count && xs.count == offsets.count,
    "pack: \(xs.count) buffers, \(counts.count) counts, \(offsets.count) offsets")
  var end = 0
  for k in xs.indices {
    let (stop, overflow) = offsets[k].addingReportingOverflow(counts[k])
    guard counts[k] >= 0, offsets[k] >= end, !overflow, stop * dtype.size <= y.byteCount,
      counts[k] * dtype.size <= xs[k].byteCount
    else {
      throw BackendError.invalidView(
        "pack range \(k): \(counts[k]) elements at \(offsets[k]) after \(end), into "
          + "\(y.byteCount / dtype.size)")
    }
    end = stop
  }
}
