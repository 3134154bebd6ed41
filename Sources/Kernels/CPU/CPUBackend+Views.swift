/// Views and packing in host memory: a view is an address inside its buffer.
extension CPUBackend {
  /// A cache line, so that a view's vector loads start aligned.
  public var viewAlignment: Int { 64 }

  public func view(of buffer: DeviceBuffer, offset: Int, count: Int, dtype: DType) throws
    -> DeviceBuffer
  {
    try checkView(of: buffer, offset: offset, count: count, dtype: dtype, backend: self)
    return DeviceBuffer(
      view: .host(buffer.allocation.host + offset * dtype.size),
      byteCount: max(1, count) * dtype.size, of: buffer, release: { _ in })
  }

  public func pack(
    _ xs: [DeviceBuffer], counts: [Int], offsets: [Int], into y: DeviceBuffer, dtype: DType
  ) throws {
    try checkPack(xs, counts: counts, offsets: offsets, into: y, dtype: dtype)
    let size = dtype.size
    let dst = y.allocation.host
    for (k, x) in xs.enumerated() where counts[k] > 0 {
      (dst + offsets[k] * size).copyMemory(from: x.allocation.host, byteCount: counts[k] * size)
    }
  }
}
