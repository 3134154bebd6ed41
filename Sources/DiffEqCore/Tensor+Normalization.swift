import Kernels

extension Tensor {
  /// Group normalisation of x [N, C, …]: each sample's channels split into `groups` groups,
  /// normalised to zero mean and unit variance (biased, + eps) over the group, then scaled by
  /// gamma [C] and shifted by beta [C]. With `relu`, the result is max(0, ·) in the same op
  /// (`Backend.groupNormReLU`: one pass where the backend fuses them).
  public func groupNorm(
    groups: Int, gamma: Tensor, beta: Tensor, eps: Double = 1e-5, relu: Bool = false
  ) throws -> Tensor {
    try checkCompatible(gamma, "groupNorm")
    try checkCompatible(beta, "groupNorm")
    guard rank >= 2, groups >= 1, shape[1] % groups == 0 else {
      throw TensorError.invalidArgument(
        op: "groupNorm",
        reason: "\(shape[safe: 1] ?? 0) channels do not split into \(groups) groups")
    }
    let c = shape[1]
    guard gamma.shape == [c], beta.shape == [c] else {
      throw TensorError.shapeMismatch(op: "groupNorm affine", lhs: [c], rhs: gamma.shape)
    }
    let s = GroupNormShape(
      n: shape[0], c: c, hw: shape[2...].reduce(1, *), groups: groups, eps: eps)
    let y = try empty(shape)
    let mean = try empty([s.n * groups])
    let rstd = try empty([s.n * groups])
    if relu {
      try backend.groupNormReLU(
        x: buffer, gamma: gamma.buffer, beta: beta.buffer, y: y.buffer, mean: mean.buffer,
        rstd: rstd.buffer, s, dtype: dtype)
    } else {
      try backend.groupNorm(
        x: buffer, gamma: gamma.buffer, beta: beta.buffer, y: y.buffer, mean: mean.buffer,
        rstd: rstd.buffer, s, dtype: dtype)
    }
    let (x, gm, output) = (detached, gamma.detached, y.detached)
    return y.recorded(from: [self, gamma, beta]) { dy in
      let dx = try x.empty(x.shape)
      let dgamma = try x.empty([c])
      let dbeta = try x.empty([c])
      if relu {
        try x.backend.groupNormReLUGrad(
          x: x.buffer, gamma: gm.buffer, mean: mean.buffer, rstd: rstd.buffer, y: output.buffer,
          dy: dy.buffer, dx: dx.buffer, dgamma: dgamma.buffer, dbeta: dbeta.buffer, s,
          dtype: x.dtype)
      } else {
        try x.backend.groupNormGrad(
          x: x.buffer, gamma: gm.buffer, mean: mean.buffer, rstd: rstd.buffer, dy: dy.buffer,
          dx: dx.buffer, dgamma: dgamma.buffer, dbeta: dbeta.buffer, s, dtype: x.dtype)
      }
      return [dx, dgamma, dbeta]
    }
  }

  /// Batch normalisation with the batch's own statistics over every axis but the channel axis 1:
  /// (x − μ_c)/√(σ²_c + eps)·gamma + beta, returning the normalised tensor and (μ, σ²) [C] (σ²
  /// biased) for running averages. Composed of differentiable ops, so its gradient is exact.
  public func batchNorm(gamma: Tensor, beta: Tensor, eps: Double = 1e-5) throws -> (
    Tensor, mean: Tensor, variance: Tensor
  ) {
    guard rank >= 2, gamma.shape == [shape[1]], beta.shape == [shape[1]] else {
      throw TensorError.shapeMismatch(op: "batchNorm", lhs: shape, rhs: gamma.shape)
    }
    let axes = [0] + Array(2..<rank)
    let bshape = [1, shape[1]] + Array(repeating: 1, count: rank - 2)
    let mu = try mean(axes: axes, keepDims: true)
    let centered = try self - mu
    let variance = try centered.square().mean(axes: axes, keepDims: true)
    let y = try centered / (variance + eps).sqrt() * gamma.reshaped(bshape) + beta.reshaped(bshape)
    return (y, try mu.reshaped([shape[1]]).detached, try variance.reshaped([shape[1]]).detached)
  }
}

extension Array {
  subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
