import Kernels

/// y = x·Wᵀ + b, W [out, in], initialised as PyTorch does: U(±1/√in) for weight and bias.
public final class Linear: Module, UnaryLayer {
  public let weight: Parameter
  public let bias: Parameter?

  public init(
    _ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, dtype: DType = .float32,
    rng: inout RandomState, on backend: any Backend
  ) throws {
    let bound = 1 / Double(inFeatures).squareRoot()
    weight = Parameter(
      try .uniform(
        [outFeatures, inFeatures], low: -bound, high: bound, dtype: dtype, rng: &rng, on: backend))
    self.bias =
      bias
      ? Parameter(
        try .uniform([outFeatures], low: -bound, high: bound, dtype: dtype, rng: &rng, on: backend))
      : nil
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try x.linear(weight: weight.value, bias: bias?.value)
  }
}

/// 2-D convolution over NCHW, weight [out, in/groups, k, k] (grouped when `groups` > 1),
/// PyTorch's default initialisation.
public final class Conv2d: Module, UnaryLayer {
  public let weight: Parameter
  public let bias: Parameter?
  public let stride: Int
  public let padding: Int
  public let groups: Int

  public init(
    _ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
    groups: Int = 1, bias: Bool = true, dtype: DType = .float32, rng: inout RandomState,
    on backend: any Backend
  ) throws {
    guard groups >= 1, inChannels % groups == 0, outChannels % groups == 0 else {
      throw TensorError.invalidArgument(
        op: "Conv2d",
        reason: "\(inChannels) → \(outChannels) channels do not split into \(groups) groups")
    }
    let fanIn = Double(inChannels / groups) * Double(kernelSize) * Double(kernelSize)
    let bound = 1 / fanIn.squareRoot()
    weight = Parameter(
      try .uniform(
        [outChannels, inChannels / groups, kernelSize, kernelSize], low: -bound, high: bound,
        dtype: dtype, rng: &rng, on: backend))
    self.bias =
      bias
      ? Parameter(
        try .uniform([outChannels], low: -bound, high: bound, dtype: dtype, rng: &rng, on: backend))
      : nil
    self.stride = stride
    self.padding = padding
    self.groups = groups
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try x.conv2d(
      weight: weight.value, bias: bias?.value, stride: stride, padding: padding, groups: groups)
  }
}

/// Group normalisation with a per-channel affine transform (γ = 1, β = 0 initially).
public final class GroupNorm: Module, UnaryLayer {
  public let groups: Int
  public let eps: Double
  public let gamma: Parameter
  public let beta: Parameter

  public init(
    groups: Int, channels: Int, eps: Double = 1e-5, dtype: DType = .float32,
    on backend: any Backend
  ) throws {
    guard groups >= 1, channels % groups == 0 else {
      throw TensorError.invalidArgument(
        op: "GroupNorm", reason: "\(channels) channels do not split into \(groups) groups")
    }
    self.groups = groups
    self.eps = eps
    gamma = Parameter(try .ones([channels], dtype: dtype, on: backend))
    beta = Parameter(try .zeros([channels], dtype: dtype, on: backend))
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try x.groupNorm(groups: groups, gamma: gamma.value, beta: beta.value, eps: eps)
  }

  /// With `relu`, max(0, GroupNorm(x)) as one op (`Tensor.groupNorm(…, relu:)`).
  public func callAsFunction(_ x: Tensor, relu: Bool) throws -> Tensor {
    try x.groupNorm(groups: groups, gamma: gamma.value, beta: beta.value, eps: eps, relu: relu)
  }

  /// The groups the models use for `channels`: two channels per group up to 32 groups (the
  /// Neural ODE paper's GroupNorm(32, 64)). One channel per group would normalise every channel
  /// of an image to the same statistics, which erases what a pooled head needs to see.
  /// (torchdiffeq's `norm(dim)` takes min(32, channels): the same at 64 channels, one channel
  /// per group below 64.)
  public static func defaultGroups(channels: Int) -> Int { max(1, min(32, channels / 2)) }
}

/// Batch normalisation over N, H, W per channel: batch statistics in training (updating running
/// averages with `momentum`, PyTorch's convention and unbiased running variance, in the same
/// fused launch), running statistics in evaluation. The running statistics are non-trainable
/// parameters, so checkpoints save them.
public final class BatchNorm: Module, UnaryLayer {
  public let eps: Double
  public let momentum: Double
  public let gamma: Parameter
  public let beta: Parameter
  public let runningMean: Parameter
  public let runningVariance: Parameter

  public init(
    channels: Int, eps: Double = 1e-5, momentum: Double = 0.1, dtype: DType = .float32,
    on backend: any Backend
  ) throws {
    guard channels >= 1, eps > 0, momentum >= 0, momentum <= 1 else {
      throw TensorError.invalidArgument(
        op: "BatchNorm",
        reason: "channels \(channels), eps \(eps), momentum \(momentum) (need ≥ 1, > 0, [0, 1])")
    }
    self.eps = eps
    self.momentum = momentum
    gamma = Parameter(try .ones([channels], dtype: dtype, on: backend))
    beta = Parameter(try .zeros([channels], dtype: dtype, on: backend))
    runningMean = Parameter(try .zeros([channels], dtype: dtype, on: backend), trainable: false)
    runningVariance = Parameter(try .ones([channels], dtype: dtype, on: backend), trainable: false)
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try callAsFunction(x, relu: false)
  }

  /// With `relu`, max(0, BatchNorm(x)): in training one op (`Tensor.batchNorm(…, relu:)`).
  public func callAsFunction(_ x: Tensor, relu: Bool) throws -> Tensor {
    if isTraining {
      let (y, mean, variance) = try x.batchNorm(
        gamma: gamma.value, beta: beta.value, eps: eps, runningMean: runningMean.value,
        runningVariance: runningVariance.value, momentum: momentum, relu: relu)
      runningMean.value = mean
      runningVariance.value = variance
      return y
    }
    let y = try x.batchNormInference(
      gamma: gamma.value, beta: beta.value, mean: runningMean.value,
      variance: runningVariance.value, eps: eps)
    return relu ? try y.relu() : y
  }
}

/// Inverted dropout in training mode, identity in evaluation. Each call draws a fresh mask seed
/// from the layer's own generator, which checkpoints can save.
public final class Dropout: Module, UnaryLayer {
  public let p: Double
  public var rng: RandomState

  public init(p: Double, seed: UInt64 = 0) throws {
    guard p >= 0, p < 1 else {
      throw TensorError.invalidArgument(op: "Dropout", reason: "p = \(p) is not in [0, 1)")
    }
    self.p = p
    self.rng = RandomState(seed: seed)
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    guard isTraining, p > 0 else { return x }
    return try x.dropout(p: p, seed: rng.nextSeed())
  }
}
