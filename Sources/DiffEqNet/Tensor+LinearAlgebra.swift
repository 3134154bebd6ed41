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
    return out.recorded(from: [self, other]) { g in
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
  public func linear(weight: Tensor, bias: Tensor?) throws -> Tensor {
    guard rank == 2, weight.rank == 2, shape[1] == weight.shape[1] else {
      throw TensorError.shapeMismatch(op: "linear", lhs: shape, rhs: weight.shape)
    }
    let y = try matmul(weight, transposeOther: true)
    guard let bias else { return y }
    guard bias.shape == [weight.shape[0]] else {
      throw TensorError.shapeMismatch(op: "linear bias", lhs: [weight.shape[0]], rhs: bias.shape)
    }
    return try y + bias
  }
}
