extension CPUBackend {
  public func gemm(
    _ a: DeviceBuffer, _ b: DeviceBuffer, _ c: DeviceBuffer, _ p: GEMMShape, dtype: DType
  ) throws {
    switch dtype {
    case .float32: Self.gemm(a.pointer(Float.self), b.pointer(Float.self), c.pointer(Float.self), p)
    case .float64:
      Self.gemm(a.pointer(Double.self), b.pointer(Double.self), c.pointer(Double.self), p)
    }
  }

  static func gemm<T: CPUScalar>(
    _ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>, _ c: UnsafeMutablePointer<T>,
    _ p: GEMMShape
  ) {
    for i in 0..<p.batch {
      let pa = a + p.offsetA + i * p.strideA
      let pb = b + p.offsetB + i * p.strideB
      let pc = c + p.offsetC + i * p.strideC
      if p.k == 0 {
        // The product is an empty sum: C = beta·C, and beta = 0 must not read C (NaN·0 is NaN).
        for r in 0..<p.m {
          for j in 0..<p.n { pc[r * p.ldc + j] = p.beta == 0 ? 0 : T(p.beta) * pc[r * p.ldc + j] }
        }
        continue
      }
      if p.m * p.n * p.k <= Self.smallGEMMVolume {
        if !T.vectorisedSmallGEMM(p, pa, pb, pc) { Self.smallGEMM(p, pa, pb, pc) }
        continue
      }
      // OpenBLAS runs single-threaded (see `CPUBackend.init`); large products are split here
      // into row or column panels, one per core.
      let big = p.m * p.n * p.k >= 1 << 21
      let splitRows = p.m >= p.n
      let extent = splitRows ? p.m : p.n
      let parts = big ? min(hostCores, extent / 16) : 1
      let per = (extent + max(1, parts) - 1) / max(1, parts)
      parallelFor(max(1, parts), grain: 1) { r in
        for part in r {
          let lo = part * per
          let len = min(extent, lo + per) - lo
          guard len > 0 else { continue }
          if splitRows {
            T.gemm(
              p.transA, p.transB, len, p.n, p.k, T(p.alpha), pa + (p.transA ? lo : lo * p.lda),
              p.lda, pb, p.ldb, T(p.beta), pc + lo * p.ldc, p.ldc)
          } else {
            T.gemm(
              p.transA, p.transB, p.m, len, p.k, T(p.alpha), pa, p.lda,
              pb + (p.transB ? lo * p.ldb : lo), p.ldb, T(p.beta), pc + lo, p.ldc)
          }
        }
      }
    }
  }

  /// Products up to this many multiply-adds skip OpenBLAS, whose argument checks, packing and
  /// beta pass cost about a microsecond per call: more than the arithmetic of the tiny layers
  /// (Linear(2→50) at batch 20 is 2,000) that small vector fields are made of.
  static var smallGEMMVolume: Int { 16_384 }

  /// C = alpha·op(A)·op(B) + beta·C by direct loops, in one of three orders so that the inner
  /// loop is contiguous and independent across its iterations (vectorised), or a dot product in
  /// vector lanes:
  /// - wide outputs or a short k: each row of C accumulates k scaled rows of op(B), packed first;
  /// - A stored transposed (a layer's weight gradient Gᵀ·X): each column of C accumulates k scaled
  ///   rows of the stored A;
  /// - otherwise each element is a dot product of a row of op(A) and a packed column of op(B).
  static func smallGEMM<T: CPUScalar>(
    _ p: GEMMShape, _ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>,
    _ c: UnsafeMutablePointer<T>
  ) {
    let (m, n, k) = (p.m, p.n, p.k)
    // op(A)[i, l] and op(B)[l, j] whatever the transposes.
    let (sai, sal) = p.transA ? (1, p.lda) : (p.lda, 1)
    let (sbl, sbj) = p.transB ? (1, p.ldb) : (p.ldb, 1)
    let rowForm = n >= 8 || k < 8
    let columnForm = !rowForm && p.transA
    let scratchCount = rowForm ? k * n : columnForm ? m : k * n + n
    withUnsafeTemporaryAllocation(of: T.self, capacity: scratchCount) { scratch in
      let s = scratch.baseAddress!
      if rowForm {
        // op(B) as k rows of n; each row of C (contiguous) accumulates k scaled rows of it, the
        // first pass also applying beta (k ≥ 1 here: k = 0 is handled by `gemm`).
        for l in 0..<k { for j in 0..<n { s[l * n + j] = b[l * sbl + j * sbj] } }
        let (alpha, beta) = (T(p.alpha), T(p.beta))
        for i in 0..<m {
          let ci = c + i * p.ldc
          let a0 = alpha * a[i * sai]
          if beta == 0 {
            for j in 0..<n { ci[j] = a0 * s[j] }
          } else {
            for j in 0..<n { ci[j] = beta * ci[j] + a0 * s[j] }
          }
          for l in 1..<k {
            let ail = alpha * a[i * sai + l * sal]
            let bl = s + l * n
            for j in 0..<n { ci[j] += ail * bl[j] }
          }
        }
      } else if columnForm {
        // op(A)[i, l] = a[l·lda + i]: column j of C accumulates k scaled rows of the stored A.
        for j in 0..<n {
          s.update(repeating: 0, count: m)
          for l in 0..<k {
            let blj = b[l * sbl + j * sbj]
            let al = a + l * p.lda
            for i in 0..<m { s[i] += blj * al[i] }
          }
          store(s, count: m, into: c + j, stride: p.ldc, p)
        }
      } else {
        // op(B) as n columns of k; op(A)'s rows are contiguous here (A is not transposed).
        for j in 0..<n { for l in 0..<k { s[j * k + l] = b[l * sbl + j * sbj] } }
        let dots = s + k * n
        for i in 0..<m {
          for j in 0..<n { dots[j] = dot(a + i * sai, s + j * k, k) }
          store(dots, count: n, into: c + i * p.ldc, stride: 1, p)
        }
      }
    }
  }

  /// c[i·stride] = alpha·v[i] + beta·c[i·stride], not reading C when beta = 0 (it may hold NaN,
  /// as BLAS allows); the two cases are separate loops so that each vectorises.
  @inline(__always)
  static func store<T: CPUScalar>(
    _ v: UnsafeMutablePointer<T>, count: Int, into c: UnsafeMutablePointer<T>, stride: Int,
    _ p: GEMMShape
  ) {
    let (alpha, beta) = (T(p.alpha), T(p.beta))
    if beta == 0 {
      for i in 0..<count { c[i * stride] = alpha * v[i] }
    } else {
      for i in 0..<count { c[i * stride] = alpha * v[i] + beta * c[i * stride] }
    }
  }

  public func reduceSum(
    _ x: DeviceBuffer, _ y: DeviceBuffer, shape: ReductionShape, scale: Double, dtype: DType
  ) throws {
    switch dtype {
    case .float32: Self.reduceSum(x.pointer(Float.self), y.pointer(Float.self), shape, scale)
    case .float64: Self.reduceSum(x.pointer(Double.self), y.pointer(Double.self), shape, scale)
    }
  }

  static func reduceSum<T: CPUScalar>(
    _ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>, _ s: ReductionShape,
    _ scale: Double
  ) {
    let (n, inner) = (s.n, s.inner)
    let k = T(scale)
    if inner == 1 {
      parallelFor(s.outer, grain: max(1, (1 << 15) / max(1, n))) { r in
        for o in r {
          y[o] = sum(x + o * n, n) * k
        }
      }
      return
    }
    // Accumulate whole rows of `inner` so that memory is read in order.
    parallelFor(s.outer * inner, grain: 1 << 14) { r in
      var lo = r.lowerBound
      while lo < r.upperBound {
        let o = lo / inner
        let i0 = lo % inner
        let i1 = min(inner, i0 + (r.upperBound - lo))
        let dst = y + o * inner
        let rows = x + o * n * inner
        // 16 columns at a time in registers over all n rows, rather than a read-modify-write of
        // dst per row (a layer's bias gradient sums a batch of short rows).
        var i = i0
        while i + 16 <= i1 {
          var s0 = SIMD4<T>()
          var s1 = SIMD4<T>()
          var s2 = SIMD4<T>()
          var s3 = SIMD4<T>()
          for j in 0..<n {
            let src = rows + j * inner + i
            s0 += load(src, 0)
            s1 += load(src, 4)
            s2 += load(src, 8)
            s3 += load(src, 12)
          }
          let out = UnsafeMutableRawPointer(dst + i)
          out.storeBytes(of: s0 * k, as: SIMD4<T>.self)
          out.storeBytes(of: s1 * k, toByteOffset: 4 * MemoryLayout<T>.stride, as: SIMD4<T>.self)
          out.storeBytes(of: s2 * k, toByteOffset: 8 * MemoryLayout<T>.stride, as: SIMD4<T>.self)
          out.storeBytes(of: s3 * k, toByteOffset: 12 * MemoryLayout<T>.stride, as: SIMD4<T>.self)
          i += 16
        }
        for c in i..<i1 {
          var acc: T = 0
          for j in 0..<n { acc += rows[j * inner + c] }
          dst[c] = acc * k
        }
        lo += i1 - i0
      }
    }
  }

  public func permute(_ x: DeviceBuffer, _ y: DeviceBuffer, _ p: PermuteShape, dtype: DType)
    throws
  {
    switch dtype {
    case .float32: Self.permute(x.pointer(Float.self), y.pointer(Float.self), p)
    case .float64: Self.permute(x.pointer(Double.self), y.pointer(Double.self), p)
    }
  }

  static func permute<T: CPUScalar>(
    _ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>, _ p: PermuteShape
  ) {
    let s = p.shape
    let inStrides = [s[1] * s[2] * s[3], s[2] * s[3], s[3], 1]
    let o = p.perm.map { s[$0] }
    let st = p.perm.map { inStrides[$0] }
    let rows = o[0] * o[1] * o[2]
    let n = o[3]
    let s3 = st[3]
    parallelFor(rows, grain: max(1, (1 << 15) / max(1, n))) { r in
      for row in r {
        let i2 = row % o[2]
        let i1 = (row / o[2]) % o[1]
        let i0 = row / (o[2] * o[1])
        let src = x + i0 * st[0] + i1 * st[1] + i2 * st[2]
        let dst = y + row * n
        for j in 0..<n { dst[j] = src[j * s3] }
      }
    }
  }

  public func copyBlocks(_ x: DeviceBuffer, _ y: DeviceBuffer, _ p: BlockCopy, dtype: DType)
    throws
  {
    let size = dtype.size
    let src = x.allocation.host
    let dst = y.allocation.host
    parallelFor(p.blocks, grain: max(1, (1 << 16) / max(1, p.length))) { r in
      for b in r {
        (dst + (p.dstOffset + b * p.dstStride) * size).copyMemory(
          from: src + (p.srcOffset + b * p.srcStride) * size, byteCount: p.length * size)
      }
    }
  }
}
