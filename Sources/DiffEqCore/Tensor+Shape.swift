import Kernels

extension Tensor {
  /// The same elements under a new shape (one dimension may be -1). Shares storage.
  public func reshaped(_ newShape: [Int]) throws -> Tensor {
    var s = newShape
    if let i = s.firstIndex(of: -1) {
      let rest = s.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
      guard rest > 0, count % rest == 0 else {
        throw TensorError.shapeMismatch(op: "reshape", lhs: shape, rhs: newShape)
      }
      s[i] = count / rest
    }
    guard s.reduce(1, *) == count, !s.contains(where: { $0 < 0 }) else {
      throw TensorError.shapeMismatch(op: "reshape", lhs: shape, rhs: newShape)
    }
    let old = shape
    let out = Tensor(shape: s, dtype: dtype, backend: backend, buffer: buffer)
    return out.recorded(from: self) { g in [try g.reshaped(old)] }
  }

  /// Dimensions reordered: result dimension d is input dimension `perm[d]` (rank ≤ 4).
  public func permuted(_ perm: [Int]) throws -> Tensor {
    guard perm.sorted() == Array(0..<rank) else {
      throw TensorError.invalidArgument(
        op: "permute", reason: "\(perm) is not a permutation of 0..<\(rank)")
    }
    guard rank <= 4 else {
      throw TensorError.invalidShape(op: "permute", shape: shape, reason: "rank above 4")
    }
    let pad = 4 - rank
    let p4 = Array(0..<pad) + perm.map { $0 + pad }
    let out = try empty(perm.map { shape[$0] })
    try backend.permute(
      buffer, out.buffer, PermuteShape(shape: Array(repeating: 1, count: pad) + shape, perm: p4),
      dtype: dtype)
    var inverse = perm
    for (i, p) in perm.enumerated() { inverse[p] = i }
    return out.recorded(from: self) { g in [try g.permuted(inverse)] }
  }

  /// The matrix transpose of a rank-2 tensor.
  public var transposed: Tensor {
    get throws {
      guard rank == 2 else {
        throw TensorError.invalidShape(op: "transpose", shape: shape, reason: "expected a matrix")
      }
      return try permuted([1, 0])
    }
  }

  /// Elements `range` along `axis`.
  public func slice(axis: Int, _ range: Range<Int>) throws -> Tensor {
    let ax = try normalizedAxes([axis], op: "slice")[0]
    guard range.lowerBound >= 0, range.upperBound <= shape[ax] else {
      throw TensorError.invalidArgument(
        op: "slice", reason: "range \(range) out of bounds for axis \(ax) of \(shape)")
    }
    var s = shape
    s[ax] = range.count
    let out = try empty(s)
    let inner = shape[(ax + 1)...].reduce(1, *)
    if out.count > 0 {
      try backend.copyBlocks(
        buffer, out.buffer,
        BlockCopy(
          blocks: shape[..<ax].reduce(1, *), length: range.count * inner,
          srcOffset: range.lowerBound * inner, srcStride: shape[ax] * inner, dstOffset: 0,
          dstStride: range.count * inner), dtype: dtype)
    }
    let full = shape
    return out.recorded(from: self) { g in
      // The adjoint pads the cotangent with zeros around the slice.
      let before = range.lowerBound
      let after = full[ax] - range.upperBound
      var parts: [Tensor] = []
      var zs = full
      if before > 0 {
        zs[ax] = before
        parts.append(try Tensor.zeros(zs, dtype: g.dtype, on: g.backend))
      }
      parts.append(g)
      if after > 0 {
        zs[ax] = after
        parts.append(try Tensor.zeros(zs, dtype: g.dtype, on: g.backend))
      }
      return [try Tensor.concat(parts, axis: ax)]
    }
  }

  /// Tensors joined along `axis`; all other dimensions must agree.
  public static func concat(_ parts: [Tensor], axis: Int) throws -> Tensor {
    guard let first = parts.first else {
      throw TensorError.invalidArgument(op: "concat", reason: "no tensors")
    }
    let ax = try first.normalizedAxes([axis], op: "concat")[0]
    for p in parts.dropFirst() {
      try first.checkCompatible(p, "concat")
      var a = p.shape
      var b = first.shape
      guard a.count == b.count else {
        throw TensorError.shapeMismatch(op: "concat", lhs: b, rhs: a)
      }
      a[ax] = 0
      b[ax] = 0
      guard a == b else {
        throw TensorError.shapeMismatch(op: "concat", lhs: first.shape, rhs: p.shape)
      }
    }
    var s = first.shape
    s[ax] = parts.reduce(0) { $0 + $1.shape[ax] }
    let out = try first.empty(s)
    let inner = s[(ax + 1)...].reduce(1, *)
    let blocks = s[..<ax].reduce(1, *)
    var offset = 0
    if blocks == 1 {
      // Each part is one run of the result: gathered together (one launch per 16 on OpenCL).
      var offsets: [Int] = []
      for p in parts {
        offsets.append(offset)
        offset += p.shape[ax] * inner
      }
      try first.backend.pack(
        parts.map(\.buffer), counts: parts.map { $0.shape[ax] * inner }, offsets: offsets,
        into: out.buffer, dtype: first.dtype)
    }
    for p in parts where blocks != 1 {
      let len = p.shape[ax] * inner
      if len > 0 && blocks > 0 {
        try first.backend.copyBlocks(
          p.buffer, out.buffer,
          BlockCopy(
            blocks: blocks, length: len, srcOffset: 0, srcStride: len, dstOffset: offset,
            dstStride: s[ax] * inner), dtype: first.dtype)
      }
      offset += len
    }
    let sizes = parts.map { $0.shape[ax] }
    return out.recorded(from: parts) { g in
      var start = 0
      return try sizes.map { n in
        defer { start += n }
        return try g.slice(axis: ax, start..<(start + n))
      }
    }
  }
}
