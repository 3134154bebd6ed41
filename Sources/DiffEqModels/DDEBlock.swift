import DiffEqCore
import DiffEqODE
import Kernels

/// h(1) from h(0) by integrating dh/dt = f(t, h(t), h(t − τ)) over [0, 1] with the constant
/// history h(t) = h(0) for t ≤ 0 (`ddeint`): the delay counterpart of `ODEBlock`, with f a
/// `DelayConcatFunction` (ddnn-a) or a `DelaySplitFunction` (ddnn-b).
public final class DDEBlock: Module, UnaryLayer {
  /// How f combines the current and the delayed features.
  public enum Combination: Sendable {
    /// f on the channel concatenation [h(t); h(t − τ)] (ddnn-a).
    case concatenation
    /// f = g(t, h(t)) + q(h(t − τ)), q a 1×1 convolution (ddnn-b).
    case separatePaths
  }

  public let function: Module
  let field: DelayVectorField
  public var delay: Double
  public var options: ODEOptions
  public var gradient: GradientMethod
  /// The statistics of the most recent solve (the backward counts fill in after backpropagation).
  public private(set) var lastStatistics = ODEStatistics()

  /// A block whose delay τ lies in (0, 1).
  public init(
    channels: Int, groups: Int? = nil, combination: Combination, delay: Double,
    options: ODEOptions, gradient: GradientMethod, dtype: DType = .float32,
    rng: inout RandomState, on backend: any Backend
  ) throws {
    guard delay > 0, delay < 1 else {
      throw ODEError.invalidOptions("the DDE block's delay must lie in (0, 1), got \(delay)")
    }
    switch combination {
    case .concatenation:
      let f = try DelayConcatFunction(
        channels: channels, groups: groups, dtype: dtype, rng: &rng, on: backend)
      function = f
      field = f.field
    case .separatePaths:
      let f = try DelaySplitFunction(
        channels: channels, groups: groups, dtype: dtype, rng: &rng, on: backend)
      function = f
      field = f.field
    }
    self.delay = delay
    self.options = options
    self.gradient = gradient
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    let solution = try ddeint(
      field, x, delays: [delay], times: [0, 1], options: options, gradient: gradient)
    lastStatistics = solution.statistics
    return solution.states[1]
  }
}
