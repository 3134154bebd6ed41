import Kernels

extension Tensor {
  /// 2-D cross-correlation of x [N, C, H, W] with weight [O, C, kh, kw], plus bias [O]:
  /// y[n, o, i, j] = b[o] + Σ x[n, c, i·s − p + u, j·s − p + v] · w[o, c, u, v] (zero padding).
  ///
  /// Each backend chooses its lowering (`Backend.conv2d`): one batch-wide im2col GEMM by default,
  /// chunks of images expanded in cache on the CPU (`CPUBackend+Convolution.swift`).
  public func conv2d(weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0)
    throws -> Tensor
  {
    let g = try convolutionGeometry(weight: weight, bias: bias, stride: stride, padding: padding)
    let o = weight.shape[0]
    // The bias is added by the backend's convolution (Winograd's output transform on the CPU),
    // not as a broadcast add over the whole output afterwards.
    let out = try empty([g.n, o, g.outH, g.outW])
    try backend.conv2d(
      buffer, weight.buffer, bias: bias?.buffer, out.buffer, outChannels: o, g, dtype: dtype)
    let (x, w) = (detached, weight.detached)
    let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
    // Only the cotangents of tracked inputs are computed: a network's first convolution needs no
    // ∂L/∂image, and a VJP with respect to the state alone (an implicit gradient's linear solve)
    // no ∂L/∂W.
    let (needsInput, needsWeight, needsBias) = (
      isTracked, weight.isTracked, bias?.isTracked == true
    )
    return out.recorded(from: inputs) { gy in
      var grads: [Tensor?] = [
        needsInput ? try Tensor.conv2dBackwardData(gy, weight: w, geometry: g) : nil
      ]
      let (dw, dbias) = try Tensor.parameterGradients(
        gy, weight: needsWeight ? w : nil, bias: needsBias
      ) { dy, dw, dbias in
        try gy.backend.conv2dBackwardWeights(
          dy.buffer, x.buffer, dw.buffer, bias: dbias?.buffer, outChannels: o, g,
          dtype: gy.dtype)
      }
      grads.append(dw)
      if inputs.count == 3 { grads.append(dbias) }
      return grads
    }
  }

  /// `conv2d` of [t·1, x]: the input with a constant channel t prepended (zero in the padding,
  /// as if the concatenation were padded), weight [O, 1 + C, kh, kw] with the time's channel
  /// first. This is torchdiffeq's ConcatConv2d; backends fold the channel into the convolution
  /// instead of concatenating (`Backend.timeConcatConv2d`). t is a constant: no gradient.
  public func timeConcatConv2d(
    time t: Double, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0
  ) throws -> Tensor {
    guard rank == 4 else {
      throw TensorError.invalidShape(op: "timeConcatConv2d", shape: shape, reason: "expected NCHW")
    }
    guard t.isFinite else {
      throw TensorError.invalidArgument(op: "timeConcatConv2d", reason: "time \(t) is not finite")
    }
    let g = try convolutionGeometry(
      weight: weight, bias: bias, stride: stride, padding: padding, extraChannels: 1)
    let o = weight.shape[0]
    let out = try empty([g.n, o, g.outH, g.outW])
    try backend.timeConcatConv2d(
      buffer, time: t, weight.buffer, bias: bias?.buffer, out.buffer, outChannels: o, g,
      dtype: dtype)
    let (x, w) = (detached, weight.detached)
    let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
    let (needsInput, needsWeight, needsBias) = (
      isTracked, weight.isTracked, bias?.isTracked == true
    )
    return out.recorded(from: inputs) { gy in
      var grads: [Tensor?] = [nil, nil]
      if needsInput {
        let dx = try x.empty(x.shape)
        try gy.backend.timeConcatConv2dBackwardData(
          gy.buffer, w.buffer, dx.buffer, outChannels: o, g, dtype: gy.dtype)
        grads[0] = dx
      }
      let (dw, dbias) = try Tensor.parameterGradients(
        gy, weight: needsWeight ? w : nil, bias: needsBias
      ) { dy, dw, dbias in
        try gy.backend.timeConcatConv2dBackwardWeights(
          dy.buffer, x.buffer, time: t, dw.buffer, bias: dbias?.buffer, outChannels: o, g,
          dtype: gy.dtype)
      }
      grads[1] = dw
      if inputs.count == 3 { grads.append(dbias) }
      return grads
    }
  }

  /// A convolution's weight and bias gradients, each where it is wanted (`weight` nil: no
  /// weight gradient): both from one backend call `weights(dy, dw, dbias)`, which can fold the
  /// bias's sum into the weight gradient's pass; a bias alone by a reduction.
  private static func parameterGradients(
    _ gy: Tensor, weight: Tensor?, bias: Bool,
    _ weights: (Tensor, Tensor, Tensor?) throws -> Void
  ) throws -> (Tensor?, Tensor?) {
    guard let weight else { return (nil, bias ? try gy.sum(axes: [0, 2, 3]) : nil) }
    let dw = try gy.empty(weight.shape)
    let dbias = bias ? try gy.empty([weight.shape[0]]) : nil
    try weights(gy, dw, dbias)
    return (dw, dbias)
  }

  /// The geometry of convolving self, with `extraChannels` constant channels prepended, by
  /// `weight` (and `bias`), after checking that they fit.
  private func convolutionGeometry(
    weight: Tensor, bias: Tensor?, stride: Int, padding: Int, extraChannels: Int = 0
  ) throws -> ConvGeometry {
    try checkCompatible(weight, "conv2d")
    guard rank == 4, weight.rank == 4, shape[1] + extraChannels == weight.shape[1] else {
      throw TensorError.shapeMismatch(op: "conv2d", lhs: shape, rhs: weight.shape)
    }
    guard stride >= 1, padding >= 0 else {
      throw TensorError.invalidArgument(
        op: "conv2d", reason: "stride \(stride), padding \(padding)")
    }
    let g = ConvGeometry(
      n: shape[0], c: shape[1] + extraChannels, h: shape[2], w: shape[3], kh: weight.shape[2],
      kw: weight.shape[3], stride: stride, pad: padding)
    guard g.outH >= 1, g.outW >= 1 else {
      throw TensorError.invalidShape(
        op: "conv2d", shape: shape, reason: "kernel \(weight.shape) larger than the padded input")
    }
    if let bias {
      try checkCompatible(bias, "conv2d bias")
      guard bias.shape == [weight.shape[0]] else {
        throw TensorError.shapeMismatch(
          op: "conv2d bias", lhs: [weight.shape[0]], rhs: bias.shape)
      }
    }
    return g
  }

  /// ∂L/∂x of a convolution given ∂L/∂y. Not recorded.
  public static func conv2dBackwardData(_ gy: Tensor, weight: Tensor, geometry g: ConvGeometry)
    throws -> Tensor
  {
    let dx = try gy.empty([g.n, g.c, g.h, g.w])
    try gy.backend.conv2dBackwardData(
      gy.buffer, weight.buffer, dx.buffer, outChannels: weight.shape[0], g, dtype: gy.dtype)
    return dx
  }

  /// ∂L/∂W of a convolution given ∂L/∂y. Not recorded.
  public static func conv2dBackwardWeights(_ gy: Tensor, input x: Tensor, geometry g: ConvGeometry)
    throws -> Tensor
  {
    let o = gy.shape[1]
    let dw = try gy.empty([o, g.c, g.kh, g.kw])
    try gy.backend.conv2dBackwardWeights(
      gy.buffer, x.buffer, dw.buffer, bias: nil, outChannels: o, g, dtype: gy.dtype)
    return dw
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
    return out.recorded(from: self) { gy in
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
