import Kernels

extension Tensor {
  /// op(self) · op(other) for matrices, or batched over a shared leading dimension for rank 3,
  /// where op transposes the last two dimensions when asked.
  public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false)
    throws -> Tensor
  {
    try checkCompatible(other, "matmul")
    guard
      (rank == 2 && other.rank == 2) || (rank == 3 && other.rank == 3 && shape[0] == other.shape[0])
    else { throw TensorError.shapeMismatch(op: "matmul", lhs: shape, rhs: other.shape) }
    let batch = rank == 3 ? shape[0] : 1
    let (r0, c0) = (shape[rank - 2], shape[rank - 1])
    let (r1, c1) = (other.shape[rank - 2], other.shape[rank - 1])
    let (m, k) = transposeSelf ? (c0, r0) : (r0, c0)
    let (k2, n) = transposeOther ? (c1, r1) : (r1, c1)
    guard k == k2 else {
      throw TensorError.shapeMismatch(op: "matmul", lhs: shape, rhs: other.shape)
    }
    let out = try empty(rank == 3 ? [batch, m, n] : [m, n])
    if out.count > 0 {
      try backend.gemm(
        buffer, other.buffer, out.buffer,
        GEMMShape(m: m, n: n, k: k, transA: transposeSelf, transB: transposeOther, batch: batch),
        dtype: dtype)
    }
    let (a, b) = (detached, other.detached)
    return out.recorded(from: self, other) { g in
      // C = A·B: dA = G·Bᵀ, dB = Aᵀ·G, with the transposes folded into the GEMM flags.
      let da =
        transposeSelf
        ? try b.matmul(g, transposeSelf: transposeOther, transposeOther: true)
        : try g.matmul(b, transposeOther: !transposeOther)
      let db =
        transposeOther
        ? try g.matmul(a, transposeSelf: true, transposeOther: transposeSelf)
        : try a.matmul(g, transposeSelf: !transposeSelf)
      return [da, db]
    }
  }

  /// x·Wᵀ + b for x [batch, in], W [out, in], b [out] (PyTorch's layout).
  ///
  /// One recorded op rather than a matmul and a broadcast add: small networks are made of
  /// layers whose arithmetic costs less than an op's bookkeeping. The backward pass is
  /// dx = G·W, dW = Gᵀ·x and db = Σ_rows G.
  public func linear(weight: Tensor, bias: Tensor?) throws -> Tensor {
    guard rank == 2, weight.rank == 2, shape[1] == weight.shape[1] else {
      throw TensorError.shapeMismatch(op: "linear", lhs: shape, rhs: weight.shape)
    }
    try checkCompatible(weight, "linear")
    let (batch, inputs, outputs) = (shape[0], shape[1], weight.shape[0])
    if let bias {
      try checkCompatible(bias, "linear bias")
      guard bias.shape == [outputs] else {
        throw TensorError.shapeMismatch(op: "linear bias", lhs: [outputs], rhs: bias.shape)
      }
    }
    let out = try empty([batch, outputs])
    if out.count > 0 {
      // The bias is copied into every row and the product accumulated onto it (beta = 1).
      if let bias {
        try backend.copyBlocks(
          bias.buffer, out.buffer,
          BlockCopy(
            blocks: batch, length: outputs, srcOffset: 0, srcStride: 0, dstOffset: 0,
            dstStride: outputs), dtype: dtype)
      }
      try backend.gemm(
        buffer, weight.buffer, out.buffer,
        GEMMShape(m: batch, n: outputs, k: inputs, transB: true, beta: bias == nil ? 0 : 1),
        dtype: dtype)
    }
    // `recorded` checks this too; returning first spares untracked calls (a forward solve) the
    // retains of handing it three tensors.
    guard isTracked || weight.isTracked || bias?.isTracked == true else { return out }
    return out.recorded(from: self, weight, bias) {
      [x = detached, w = weight.detached, hasBias = bias != nil] g in
      let (dx, dw, db) = try Tensor.linearBackward(g, input: x, weight: w, bias: hasBias)
      return db.map { [dx, dw, $0] } ?? [dx, dw]
    }
  }

  /// The backward pass of `linear` for the output cotangent g [batch, out]: dx = G·W,
  /// dW = Gᵀ·x and (with a bias) db = Σ_rows G. Shared by the recorded op and `MLP`'s VJP.
  static func linearBackward(_ g: Tensor, input x: Tensor, weight w: Tensor, bias: Bool) throws
    -> (dx: Tensor, dw: Tensor, db: Tensor?)
  {
    let (batch, inputs, outputs) = (x.shape[0], x.shape[1], w.shape[0])
    let dx = try x.empty(x.shape)
    let dw = try x.empty(w.shape)
    if g.count > 0 {
      try x.backend.gemm(
        g.buffer, w.buffer, dx.buffer, GEMMShape(m: batch, n: inputs, k: outputs), dtype: x.dtype)
      try x.backend.gemm(
        g.buffer, x.buffer, dw.buffer, GEMMShape(m: outputs, n: inputs, k: batch, transA: true),
        dtype: x.dtype)
    } else {
      // An empty batch or layer: the products are empty sums.
      try x.backend.fill(dx.buffer, value: 0, count: dx.count, dtype: x.dtype)
      try x.backend.fill(dw.buffer, value: 0, count: dw.count, dtype: x.dtype)
    }
    guard bias else { return (dx, dw, nil) }
    let db = try x.empty([outputs])
    try x.backend.reduceSum(
      g.buffer, db.buffer, shape: ReductionShape(outer: 1, n: batch, inner: outputs), scale: 1,
      dtype: x.dtype)
    return (dx, dw, db)
  }
}
