import DiffEqCore
import DiffEqODE
import Foundation
import Kernels

/// A continuous normalizing flow (FFJORD): data x at t = 0 flows by dz/dt = f(t, z) to
/// z(T) under a standard normal base density, and
///   log p(x) = log N(z(T); 0, I) + ∫₀ᵀ tr(∂f/∂z) dt,
/// the integral carried as the state's last column, ℓ (dℓ/dt = −trace, ℓ(0) = 0). f is a
/// `ConcatSquashMLP`; the trace is exact or Hutchinson's, its probes drawn once per solve.
public final class ContinuousNormalizingFlow: Module {
  public let network: ConcatSquashMLP
  public let dimension: Int
  /// T, the end of the flow.
  public let endTime: Double
  public var options: ODEOptions
  public var gradient: GradientMethod
  public var trace: TraceEstimator
  public private(set) var lastStatistics = ODEStatistics()

  /// A flow on d-dimensional data whose field has `hidden` layers of `width` (FFJORD's toy
  /// network: 3 of 64, tanh, T = 0.5).
  public init(
    dimension: Int, width: Int = 64, hidden: Int = 3, activation: Activation = .tanh,
    endTime: Double = 0.5, options: ODEOptions, gradient: GradientMethod, trace: TraceEstimator,
    dtype: DType = .float32, rng: inout RandomState, on backend: any Backend
  ) throws {
    guard dimension > 0, width > 0, hidden >= 0, endTime > 0, endTime.isFinite else {
      throw TensorError.invalidArgument(
        op: "ContinuousNormalizingFlow",
        reason: "dimension, width and T must be positive (got \(dimension), \(width), \(endTime))")
    }
    network = try ConcatSquashMLP(
      [dimension] + Array(repeating: width, count: hidden) + [dimension], activation: activation,
      dtype: dtype, rng: &rng, on: backend)
    self.dimension = dimension
    self.endTime = endTime
    self.options = options
    self.gradient = gradient
    self.trace = trace
    super.init()
  }

  /// log N(z; 0, I) per row [batch].
  public static func standardNormalLogDensity(_ z: Tensor) throws -> Tensor {
    let d = Double(z.shape[1])
    return try z.square().sum(axes: [1]) * -0.5 - 0.5 * d * Foundation.log(2 * Double.pi)
  }

  /// log p(x) per row [batch] for x [batch, d], differentiable with respect to x and the
  /// parameters by `gradient`; the Hutchinson probes come from `rng`. Also z(T).
  public func logDensity(_ x: Tensor, rng: inout RandomState) throws -> (
    logDensity: Tensor, latent: Tensor
  ) {
    let probes = try trace.probes(
      batch: x.shape[0], dimension: dimension, dtype: x.dtype, rng: &rng, on: x.backend)
    let y0 = try Tensor.concat(
      [x, try Tensor.zeros([x.shape[0], 1], dtype: x.dtype, on: x.backend)], axis: 1)
    let solution = try odeint(
      network.divergenceField.augmented(probes: probes), y0, times: [0, endTime],
      options: options, gradient: gradient)
    lastStatistics = solution.statistics
    let y = solution.states[1]
    let z = try y.slice(axis: 1, 0..<dimension)
    let change = try y.slice(axis: 1, dimension..<(dimension + 1)).reshaped([x.shape[0]])
    return (try Self.standardNormalLogDensity(z) - change, z)
  }

  /// Samples of the flow's density: z [batch, d] (draws of N(0, I)) carried back from T to 0,
  /// with their log-density log N(z) + ∫₀ᵀ trace dt by the exact trace. Records nothing.
  public func sample(from z: Tensor) throws -> (samples: Tensor, logDensity: Tensor) {
    let z = z.detached
    let y0 = try Tensor.concat(
      [z, try Tensor.zeros([z.shape[0], 1], dtype: z.dtype, on: z.backend)], axis: 1)
    let solution = try withParameters(
      of: self, setTo: trainableParameters().map { $0.parameter.value.detached }
    ) {
      try odeint(
        network.divergenceField.augmented(probes: nil, reversedFrom: endTime), y0,
        times: [0, endTime], options: options)
    }
    let y = solution.states[1]
    let x = try y.slice(axis: 1, 0..<dimension)
    // In reversed time ℓ gathers +∫ trace dt.
    let change = try y.slice(axis: 1, dimension..<(dimension + 1)).reshaped([z.shape[0]])
    return (x, try Self.standardNormalLogDensity(z) + change)
  }
}
