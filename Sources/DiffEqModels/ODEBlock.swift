import DiffEqCore
import DiffEqODE
import Kernels

/// h(1) from h(0) by integrating a `ConvODEFunction` over [0, 1]: the continuous-depth
/// replacement of a stack of residual blocks.
public final class ODEBlock: Module, UnaryLayer {
  public let function: ConvODEFunction
  public var options: ODEOptions
  public var gradient: GradientMethod
  public var adjoint: AdjointOptions
  /// The statistics of the most recent solve (the backward counts fill in after backpropagation).
  public private(set) var lastStatistics = ODEStatistics()

  public init(
    channels: Int, groups: Int? = nil, options: ODEOptions, gradient: GradientMethod,
    adjoint: AdjointOptions = AdjointOptions(), dtype: DType = .float32,
    rng: inout RandomState, on backend: any Backend
  ) throws {
    function = try ConvODEFunction(
      channels: channels, groups: groups, dtype: dtype, rng: &rng, on: backend)
    self.options = options
    self.gradient = gradient
    self.adjoint = adjoint
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    let solution = try odeint(
      function.field, x, times: [0, 1], options: options, gradient: gradient, adjoint: adjoint)
    lastStatistics = solution.statistics
    return solution.states[1]
  }
}

/// The pre-activation residual block of the ResNet baseline:
/// x + conv(ReLU(GN(conv(ReLU(GN(x)))))).
public final class ResidualBlock: Module, UnaryLayer {
  public let norm1: GroupNorm
  public let conv1: Conv2d
  public let norm2: GroupNorm
  public let conv2: Conv2d

  public init(
    channels: Int, groups: Int? = nil, dtype: DType = .float32, rng: inout RandomState,
    on backend: any Backend
  ) throws {
    let groups = groups ?? GroupNorm.defaultGroups(channels: channels)
    norm1 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    conv1 = try Conv2d(
      channels, channels, kernelSize: 3, padding: 1, bias: false, dtype: dtype, rng: &rng,
      on: backend)
    norm2 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    conv2 = try Conv2d(
      channels, channels, kernelSize: 3, padding: 1, bias: false, dtype: dtype, rng: &rng,
      on: backend)
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    let y = try conv2(norm2(conv1(norm1(x, relu: true)), relu: true))
    return try x + y
  }
}
