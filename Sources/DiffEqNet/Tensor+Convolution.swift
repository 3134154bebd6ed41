extension Tensor {
  /// 2-D cross-correlation of x [N, C, H, W] with weight [O, C, kh, kw], plus bias [O]:
  /// y[n, o, i, j] = b[o] + Σ x[n, c, i·s − p + u, j·s − p + v] · w[o, c, u, v] (zero padding).
  ///
  /// Lowered to im2col and one GEMM over the whole batch, [O, C·kh·kw] × [C·kh·kw, N·Ho·Wo],
  /// whose [O, N, Ho·Wo] result is permuted to NCHW; the backward pass is two GEMMs and col2im.
  public func conv2d(weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0)
    throws -> Tensor
  {
    try checkCompatible(weight, "conv2d")
    guard rank == 4, weight.rank == 4, shape[1] == weight.shape[1] else {
      throw TensorError.shapeMismatch(op: "conv2d", lhs: shape, rhs: weight.shape)
    }
    guard stride >= 1, padding >= 0 else {
      throw TensorError.invalidArgument(op: "conv2d", reason: "stride \(stride), padding \(padding)")
    }
    let g = ConvGeometry(
      n: shape[0], c: shape[1], h: shape[2], w: shape[3], kh: weight.shape[2],
      kw: weight.shape[3], stride: stride, pad: padding)
    guard g.outH >= 1, g.outW >= 1 else {
      throw TensorError.invalidShape(
        op: "conv2d", shape: shape, reason: "kernel \(weight.shape) larger than the padded input")
    }
    let o = weight.shape[0]
    let cols = try im2col(g)
    let w2 = try weight.detached.reshaped([o, g.patch])
    let y2 = try w2.matmul(cols)  // [O, N·L]
    var y = try y2.reshaped([o, g.n, g.outH * g.outW]).permuted([1, 0, 2])
      .reshaped([g.n, o, g.outH, g.outW])
    if let bias {
      guard bias.shape == [o] else {
        throw TensorError.shapeMismatch(op: "conv2d bias", lhs: [o], rhs: bias.shape)
      }
      y = try y + bias.detached.reshaped([o, 1, 1])
    }
    let out = y.detached
    let (x, w) = (detached, weight.detached)
    let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
    return out.recorded(from: inputs) { gy in
      let g2 = try gy.reshaped([g.n, o, g.outH * g.outW]).permuted([1, 0, 2])
        .reshaped([o, g.columns])
      let cols = try x.im2col(g)
      let dw = try g2.matmul(cols, transposeOther: true).reshaped(w.shape)
      let dcols = try w.reshaped([o, g.patch]).matmul(g2, transposeSelf: true)
      let dx = try x.empty(x.shape)
      try x.backend.col2im(dcols.buffer, dx.buffer, g, dtype: x.dtype)
      var grads: [Tensor?] = [dx, dw]
      if inputs.count == 3 { grads.append(try gy.sum(axes: [0, 2, 3])) }
      return grads
    }
  }

  /// The [C·kh·kw, N·Ho·Wo] patch matrix (not differentiable on its own).
  private func im2col(_ g: ConvGeometry) throws -> Tensor {
    let cols = try empty([g.patch, g.columns])
    try backend.im2col(buffer, cols.buffer, g, dtype: dtype)
    return cols
  }

  /// Average pooling over k×k windows every `stride` pixels (no padding) of x [N, C, H, W].
  public func avgPool2d(kernel k: Int, stride: Int? = nil) throws -> Tensor {
    guard rank == 4 else {
      throw TensorError.invalidShape(op: "avgPool2d", shape: shape, reason: "expected NCHW")
    }
    let g = PoolGeometry(
      n: shape[0], c: shape[1], h: shape[2], w: shape[3], k: k, stride: stride ?? k)
    guard k >= 1, g.stride >= 1, k <= g.h, k <= g.w else {
      throw TensorError.invalidArgument(op: "avgPool2d", reason: "kernel \(k) for input \(shape)")
    }
    let out = try empty([g.n, g.c, g.outH, g.outW])
    try backend.avgPool(buffer, out.buffer, g, dtype: dtype)
    let x = detached
    return out.recorded(from: [self]) { gy in
      let dx = try x.empty(x.shape)
      try x.backend.avgPoolGrad(gy.buffer, dx.buffer, g, dtype: x.dtype)
      return [dx]
    }
  }

  /// The mean over the spatial dimensions: [N, C, H, W] → [N, C].
  public func globalAvgPool() throws -> Tensor {
    guard rank == 4 else {
      throw TensorError.invalidShape(op: "globalAvgPool", shape: shape, reason: "expected NCHW")
    }
    return try mean(axes: [2, 3])
  }
}
