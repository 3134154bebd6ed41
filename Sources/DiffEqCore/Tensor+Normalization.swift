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
  /// biased). One fused backend primitive (`Backend.batchNorm`) forward and one backward. With
  /// `relu`, the result is max(0, ·) in the same op (`Backend.batchNormReLU`).
  public func batchNorm(gamma: Tensor, beta: Tensor, eps: Double = 1e-5, relu: Bool = false)
    throws -> (Tensor, mean: Tensor, variance: Tensor)
  {
    let r = try batchNormTraining(gamma: gamma, beta: beta, eps: eps, running: nil, relu: relu)
    return (r.y, r.mean, r.variance)
  }

  /// `batchNorm` that also returns the running averages after this batch, (1 − momentum)·old +
  /// momentum·new, of the mean and of the unbiased variance σ²·M/(M − 1) (M values per channel;
  /// PyTorch's convention), computed in the same launch. The averages are not recorded.
  public func batchNorm(
    gamma: Tensor, beta: Tensor, eps: Double = 1e-5, runningMean: Tensor,
    runningVariance: Tensor, momentum: Double, relu: Bool = false
  ) throws -> (Tensor, runningMean: Tensor, runningVariance: Tensor) {
    let r = try batchNormTraining(
      gamma: gamma, beta: beta, eps: eps,
      running: (runningMean, runningVariance, momentum), relu: relu)
    guard let newMean = r.runningMean, let newVariance = r.runningVariance else {
      throw TensorError.invalidArgument(op: "batchNorm", reason: "running statistics missing")
    }
    return (r.y, newMean, newVariance)
  }

  /// Batch normalisation with given statistics (evaluation mode):
  /// (x − mean_c)/√(variance_c + eps)·gamma + beta, differentiable in x, gamma and beta (the
  /// statistics are constants).
  public func batchNormInference(
    gamma: Tensor, beta: Tensor, mean: Tensor, variance: Tensor, eps: Double = 1e-5
  ) throws -> Tensor {
    let s = try batchNormShape(gamma: gamma, beta: beta, eps: eps, statistics: [mean, variance])
    let y = try empty(shape)
    try backend.batchNormInference(
      x: buffer, gamma: gamma.buffer, beta: beta.buffer, mean: mean.buffer,
      variance: variance.buffer, y: y.buffer, s, dtype: dtype)
    return y.recorded(
      from: [self, gamma, beta],
      batchNormRule(
        gamma: gamma, mean: mean, variance: variance, batchStatistics: false, reluOutput: nil, s))
  }

  private func batchNormTraining(
    gamma: Tensor, beta: Tensor, eps: Double,
    running: (mean: Tensor, variance: Tensor, momentum: Double)?, relu: Bool
  ) throws -> (
    y: Tensor, mean: Tensor, variance: Tensor, runningMean: Tensor?, runningVariance: Tensor?
  ) {
    let s = try batchNormShape(
      gamma: gamma, beta: beta, eps: eps,
      statistics: running.map { [$0.mean, $0.variance] } ?? [])
    guard s.perChannel >= 1 else {
      throw TensorError.invalidShape(op: "batchNorm", shape: shape, reason: "no values per channel")
    }
    let c = s.c
    let y = try empty(shape)
    let mean = try empty([c])
    let variance = try empty([c])
    let newMean = try running.map { _ in try empty([c]) }
    let newVariance = try running.map { _ in try empty([c]) }
    var r: BatchNormRunning?
    if let running, let newMean, let newVariance {
      r = BatchNormRunning(
        mean: running.mean.buffer, variance: running.variance.buffer, newMean: newMean.buffer,
        newVariance: newVariance.buffer, momentum: running.momentum)
    }
    if relu {
      try backend.batchNormReLU(
        x: buffer, gamma: gamma.buffer, beta: beta.buffer, y: y.buffer, mean: mean.buffer,
        variance: variance.buffer, running: r, s, dtype: dtype)
    } else {
      try backend.batchNorm(
        x: buffer, gamma: gamma.buffer, beta: beta.buffer, y: y.buffer, mean: mean.buffer,
        variance: variance.buffer, running: r, s, dtype: dtype)
    }
    let out = y.recorded(
      from: [self, gamma, beta],
      batchNormRule(
        gamma: gamma, mean: mean, variance: variance, batchStatistics: true,
        reluOutput: relu ? y.detached : nil, s))
    return (out, mean, variance, newMean, newVariance)
  }

  private func batchNormShape(gamma: Tensor, beta: Tensor, eps: Double, statistics: [Tensor])
    throws -> BatchNormShape
  {
    for t in [gamma, beta] + statistics { try checkCompatible(t, "batchNorm") }
    guard rank >= 2, ([gamma, beta] + statistics).allSatisfy({ $0.shape == [shape[1]] }) else {
      throw TensorError.shapeMismatch(op: "batchNorm", lhs: shape, rhs: gamma.shape)
    }
    guard eps > 0 else {
      throw TensorError.invalidArgument(op: "batchNorm", reason: "eps = \(eps) is not positive")
    }
    return BatchNormShape(n: shape[0], c: shape[1], hw: shape[2...].reduce(1, *), eps: eps)
  }

  /// The backward rule of every form: dx, dgamma, dbeta from one `batchNormGrad` launch, or
  /// `batchNormReLUGrad` given the fused ReLU's output.
  private func batchNormRule(
    gamma: Tensor, mean: Tensor, variance: Tensor, batchStatistics: Bool, reluOutput: Tensor?,
    _ s: BatchNormShape
  ) -> (Tensor) throws -> [Tensor?] {
    let (x, gm) = (detached, gamma.detached)
    return { dy in
      let dx = try x.empty(x.shape)
      let dgamma = try x.empty([s.c])
      let dbeta = try x.empty([s.c])
      if let reluOutput {
        try x.backend.batchNormReLUGrad(
          x: x.buffer, gamma: gm.buffer, mean: mean.buffer, variance: variance.buffer,
          y: reluOutput.buffer, dy: dy.buffer, dx: dx.buffer, dgamma: dgamma.buffer,
          dbeta: dbeta.buffer, s, dtype: x.dtype)
      } else {
        try x.backend.batchNormGrad(
          x: x.buffer, gamma: gm.buffer, mean: mean.buffer, variance: variance.buffer,
          dy: dy.buffer, dx: dx.buffer, dgamma: dgamma.buffer, dbeta: dbeta.buffer,
          batchStatistics: batchStatistics, s, dtype: x.dtype)
      }
      return [dx, dgamma, dbeta]
    }
  }
}

extension Array {
  subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
