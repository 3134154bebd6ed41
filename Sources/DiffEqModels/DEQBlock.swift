import DiffEqCore
import DiffEqODE
import Kernels

/// A deep equilibrium layer (Bai, Kolter, Koltun 2019) in place of ODE-Net's ODE block: the output
/// is the fixed point z* = f(z*, x) of
///
///     f(z, x) = GN₃(ReLU(z + GN₂(x + conv₂(GN₁(ReLU(conv₁(z)))))))
///
/// (the implicit block of the DEQ tutorial's MNIST model), found from z = 0 by `forward`, or, for
/// the continuous DEQ, as the steady state of dz/dt = f(z, x) − z (`continuous`), and
/// differentiated by `gradient`. The convolutions start at N(0, 0.01²), small enough that f is
/// contractive at initialisation and the first solves converge.
///
/// Skip DEQ and Skip Reg. DEQ (Pal, Edelman, Rackauckas) start the solve from an explicit
/// prediction z₀ instead of 0 and add λ·mean|z₀ − z*| to the loss (`regularizer`), z* not
/// detached, as the authors' code does, so the regulariser also pulls z* towards z₀: Skip DEQ
/// predicts z₀ = g_φ(x) = ReLU(GN(conv(x))) with a network of its own, Skip Reg. DEQ uses
/// z₀ = f(0, x) and no extra network.
public final class DEQBlock: Module, UnaryLayer {
  public let conv1: Conv2d
  public let norm1: GroupNorm
  public let conv2: Conv2d
  public let norm2: GroupNorm
  public let norm3: GroupNorm
  /// Skip DEQ's predictor g_φ (nil otherwise).
  public let predictorConv: Conv2d?
  public let predictorNorm: GroupNorm?
  public let skip: SkipStart?
  public var forward: FixedPointOptions
  public var gradient: EquilibriumGradient
  /// When set, z* is the steady state of dz/dt = f(z, x) − z integrated by these options
  /// (the continuous DEQ) instead of a fixed-point search.
  public var continuous: SteadyStateOptions?
  /// The work and outcome of the most recent solve (the backward fields fill in after
  /// backpropagation).
  public private(set) var lastStatistics = EquilibriumStatistics()
  /// The Skip variants' λ·mean|z₀ − z*| from the most recent forward pass, to be added to the
  /// loss (nil without a skip start).
  public private(set) var regularizer: Tensor?

  /// Where a Skip variant starts its solve.
  public enum SkipStart: Sendable, Equatable {
    /// Skip DEQ: z₀ = g_φ(x), weight λ of the regulariser.
    case predicted(weight: Double)
    /// Skip Reg. DEQ: z₀ = f(0, x), weight λ of the regulariser.
    case firstIterate(weight: Double)
  }

  public init(
    channels: Int, groups: Int? = nil, forward: FixedPointOptions, gradient: EquilibriumGradient,
    continuous: SteadyStateOptions? = nil, skip: SkipStart? = nil, dtype: DType = .float32,
    rng: inout RandomState, on backend: any Backend
  ) throws {
    let groups = groups ?? GroupNorm.defaultGroups(channels: channels)
    conv1 = try Conv2d(
      channels, channels, kernelSize: 3, padding: 1, bias: false, dtype: dtype, rng: &rng,
      on: backend)
    conv2 = try Conv2d(
      channels, channels, kernelSize: 3, padding: 1, bias: false, dtype: dtype, rng: &rng,
      on: backend)
    for conv in [conv1, conv2] {
      conv.weight.value = try .normal(
        conv.weight.value.shape, std: 0.01, dtype: dtype, rng: &rng, on: backend)
    }
    norm1 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    norm2 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    norm3 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    self.forward = forward
    self.gradient = gradient
    self.continuous = continuous
    self.skip = skip
    if case .predicted = skip {
      predictorConv = try Conv2d(
        channels, channels, kernelSize: 3, padding: 1, dtype: dtype, rng: &rng, on: backend)
      predictorNorm = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    } else {
      predictorConv = nil
      predictorNorm = nil
    }
    super.init()
  }

  /// f(z, x).
  public func function(_ z: Tensor, _ x: Tensor) throws -> Tensor {
    let y = try norm1(conv1(z).relu())
    return try norm3((z + norm2(x + conv2(y))).relu())
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    let f = { [unowned self] (z: Tensor, x: Tensor) in try self.function(z, x) }
    // The Skip variants' explicit prediction, recorded: the regulariser differentiates it.
    let prediction: Tensor?
    switch skip {
    case .predicted:
      prediction = try predictorNorm!(predictorConv!(x), relu: true)
    case .firstIterate:
      prediction = try function(try x.zerosLike(), x)
    case nil:
      prediction = nil
    }
    let start = try prediction?.detached ?? x.detached.zerosLike()
    let (z, statistics) =
      try continuous.map {
        try steadyState(
          f, input: x, parameters: self, start: start, options: $0, gradient: gradient)
      }
      ?? equilibrium(
        f, input: x, parameters: self, start: start, forward: forward, gradient: gradient)
    lastStatistics = statistics
    switch (skip, prediction) {
    case (.predicted(let weight)?, let p?), (.firstIterate(let weight)?, let p?):
      regularizer = try (p - z).abs().mean() * weight
    default:
      regularizer = nil
    }
    return z
  }
}
