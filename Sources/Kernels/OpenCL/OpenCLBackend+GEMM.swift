import CBLAS
import COpenCL
import Foundation

/// Matrix products: the tiled kernel of `gemm.cl`, or OpenBLAS on mapped buffers on CPU devices.
extension OpenCLBackend {
  /// Whether `gemm` goes to OpenBLAS: a CPU device and `options.blasOnCPUDevice`.
  public var usesBLASForGEMM: Bool { options.blasOnCPUDevice && device.type == .cpu }

  public func gemm(
    _ a: DeviceBuffer, _ b: DeviceBuffer, _ c: DeviceBuffer, _ p: GEMMShape, dtype: DType
  ) throws {
    try requireType(dtype)
    precondition(p.m >= 0 && p.n >= 0 && p.k >= 0 && p.batch >= 0, "negative GEMM shape \(p)")
    if p.m == 0 || p.n == 0 || p.batch == 0 { return }
    // BLAS rejects leading dimensions below 1, which k == 0 produces; the kernel handles it
    // (C = beta·C).
    if usesBLASForGEMM && p.k > 0 {
      try blasGEMM(a, b, c, p, dtype)
      return
    }
    let r = try configuration(.gemm, dtype)
    guard let t = r.tiling else { preconditionFailure("gemm program resolved without tiling") }
    let tilesN = (p.n + t.ts - 1) / t.ts
    let tilesM = (p.m + t.ts - 1) / t.ts
    try launch(
      .gemm, dtype,
      [
        .int(p.m), .int(p.n), .int(p.k), .int(p.transA ? 1 : 0), .int(p.transB ? 1 : 0),
        .real(p.alpha), .real(p.beta),
        .mem(a), .int(p.offsetA), .int(p.lda), .int(p.strideA),
        .mem(b), .int(p.offsetB), .int(p.ldb), .int(p.strideB),
        .mem(c), .int(p.offsetC), .int(p.ldc), .int(p.strideC),
        .int(p.alignsToVectors(a: true) ? 1 : 0), .int(p.alignsToVectors(a: false) ? 1 : 0),
      ],
      global: [tilesN * t.threadsPerDim, tilesM * t.threadsPerDim, p.batch],
      local: [t.threadsPerDim, t.threadsPerDim, 1])
  }

  /// Maps the buffers (blocking, which also waits for the queued work that produces them), runs
  /// OpenBLAS on the host pointers and unmaps. On a CPU device the mapping is the buffer's own
  /// memory, so nothing is copied. A buffer passed twice is mapped once.
  private func blasGEMM(
    _ a: DeviceBuffer, _ b: DeviceBuffer, _ c: DeviceBuffer, _ p: GEMMShape, _ dtype: DType
  ) throws {
    var mapped: [(mem: cl_mem, pointer: UnsafeMutableRawPointer)] = []
    // Every mapping is released even when one fails; the first failure is reported (an unmap
    // that fails leaves the buffer's contents undefined for the kernels that follow).
    func unmapAll() throws {
      var failure: cl_int = CL_SUCCESS
      for m in mapped {
        let code = clEnqueueUnmapMemObject(queue, m.mem, m.pointer, 0, nil, nil)
        if failure == CL_SUCCESS { failure = code }
      }
      mapped = []
      try check(failure, "clEnqueueUnmapMemObject")
    }
    defer { try? unmapAll() }
    func map(_ buffer: DeviceBuffer, write: Bool) throws -> UnsafeMutableRawPointer {
      let mem = buffer.allocation.mem
      if let m = mapped.first(where: { $0.mem == mem }) { return m.pointer }
      // C is mapped for reading too: beta ≠ 0 reads it. A and B are never written.
      let flags = write ? CL_MAP_READ | CL_MAP_WRITE : CL_MAP_READ
      var err: cl_int = 0
      let ptr = clEnqueueMapBuffer(
        queue, mem, cl_bool(CL_TRUE), cl_map_flags(flags), 0, buffer.byteCount, 0, nil, nil, &err)
      try check(err, "clEnqueueMapBuffer")
      guard let ptr else { throw BackendError.openCL(call: "clEnqueueMapBuffer", code: err) }
      count(synchronizations: 1)
      mapped.append((mem, ptr))
      return ptr
    }
    // C first, so that an operand aliasing C shares its read-write mapping.
    let pc = try map(c, write: true)
    let pa = try map(a, write: false)
    let pb = try map(b, write: false)

    let ta = p.transA ? CblasTrans : CblasNoTrans
    let tb = p.transB ? CblasTrans : CblasNoTrans
    for i in 0..<p.batch {
      let oa = p.offsetA + i * p.strideA
      let ob = p.offsetB + i * p.strideB
      let oc = p.offsetC + i * p.strideC
      switch dtype {
      case .float32:
        let fa = pa.assumingMemoryBound(to: Float.self)
        let fb = pb.assumingMemoryBound(to: Float.self)
        let fc = pc.assumingMemoryBound(to: Float.self)
        cblas_sgemm(
          CblasRowMajor, ta, tb, Int32(p.m), Int32(p.n), Int32(p.k), Float(p.alpha), fa + oa,
          Int32(p.lda), fb + ob, Int32(p.ldb), Float(p.beta), fc + oc, Int32(p.ldc))
      case .float64:
        let da = pa.assumingMemoryBound(to: Double.self)
        let db = pb.assumingMemoryBound(to: Double.self)
        let dc = pc.assumingMemoryBound(to: Double.self)
        cblas_dgemm(
          CblasRowMajor, ta, tb, Int32(p.m), Int32(p.n), Int32(p.k), p.alpha, da + oa,
          Int32(p.lda), db + ob, Int32(p.ldb), p.beta, dc + oc, Int32(p.ldc))
      }
    }
    try unmapAll()
  }
}

extension GEMMShape {
  /// Whether every row of op(A) (`a`) or op(B) that the kernel stages starts on a 4-element
  /// boundary of its buffer: offset, leading dimension and (with a batch) stride multiples of 4.
  /// Buffers and views start at least that aligned (`OpenCLDevice.baseAddressAlignment`).
  package func alignsToVectors(a: Bool) -> Bool {
    let (offset, ld, stride) = a ? (offsetA, lda, strideA) : (offsetB, ldb, strideB)
    return offset % 4 == 0 && ld % 4 == 0 && (batch == 1 || stride % 4 == 0)
  }
}
