import COpenCL

/// Views as sub-buffers, and packing as one `pack` launch per 16 buffers (`kernels/layout.cl`).
extension OpenCLBackend {
  /// The most buffers one `pack` launch gathers (its buffer-argument slots).
  static let packSlots = 16

  /// The device's sub-buffer alignment (`CL_DEVICE_MEM_BASE_ADDR_ALIGN`), and at least 64 bytes:
  /// the GEMM kernel's aligned vector loads (`alignsToVectors`) assume every view starts on a
  /// `double4`. Both are powers of two, so the larger is a multiple of the device's.
  public var viewAlignment: Int { max(64, device.baseAddressAlignment) }

  public func view(of buffer: DeviceBuffer, offset: Int, count: Int, dtype: DType) throws
    -> DeviceBuffer
  {
    try checkView(of: buffer, offset: offset, count: count, dtype: dtype, backend: self)
    let bytes = max(1, count) * dtype.size
    var region = cl_buffer_region(origin: offset * dtype.size, size: bytes)
    var err: cl_int = 0
    let sub = clCreateSubBuffer(
      buffer.allocation.mem, cl_mem_flags(CL_MEM_READ_WRITE),
      cl_buffer_create_type(CL_BUFFER_CREATE_TYPE_REGION), &region, &err)
    try checkReporting(err, "clCreateSubBuffer(\(bytes) bytes at \(offset * dtype.size))")
    guard let sub else { throw BackendError.openCL(call: "clCreateSubBuffer", code: err) }
    return DeviceBuffer(
      view: .openCL(sub), byteCount: bytes, of: buffer,
      release: { clReleaseMemObject($0.mem) })
  }

  public func pack(
    _ xs: [DeviceBuffer], counts: [Int], offsets: [Int], into y: DeviceBuffer, dtype: DType
  ) throws {
    try checkPack(xs, counts: counts, offsets: offsets, into: y, dtype: dtype)
    try requireType(dtype)
    let slots = Self.packSlots
    var first = 0
    while first < xs.count {
      let terms = min(slots, xs.count - first)
      // y, begin, end, terms; then `slots` buffers, `slots` offsets and `slots` counts.
      var args = InlineArray<52, KernelArg>(repeating: .int(0))
      precondition(args.count == 4 + 3 * slots)
      for s in 0..<slots {
        let k = first + min(s, terms - 1)
        args[4 + s] = .mem(xs[k])
        // Unused slots repeat the last range, which the kernel never selects (k < terms).
        args[4 + slots + s] = .int(offsets[k])
        args[4 + 2 * slots + s] = .int(s < terms ? counts[k] : 0)
      }
      let last = first + terms - 1
      let begin = offsets[first]
      let end = offsets[last] + counts[last]
      args[0] = .mem(y)
      args[1] = .int(begin)
      args[2] = .int(end)
      args[3] = .int(terms)
      try launch(.pack, dtype, args, global: [end - begin])
      first += terms
    }
  }
}
