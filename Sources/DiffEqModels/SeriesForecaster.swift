import DiffEqCore
import DiffEqODE
import Kernels

/// A continuous-time forecaster of d-dimensional series: from the observation x(t0) (and, for
/// the delay model, the observed past), x at later times by integrating
/// - `node-series`: dx/dt = MLP(x(t)), a neural ODE on the observed state;
/// - `ddnn-series`: dx/dt = MLP([x(t); x(t − τ)]), a delay differential network whose history
///   before t0 is the observed series; τ fixed or learned (`learnedDelay`).
/// The MLP is d (2d) → width → width → d with tanh.
public final class SeriesForecaster: Module {
  public let mlp: MLP
  /// τ for `ddnn-series` (its initial value when learned), nil for `node-series`.
  public let delay: Double?
  /// τ as a trainable one-element parameter when the delay is learned (else empty); it must
  /// stay longer than a fixed step, or the solve refuses it.
  public let learnedDelay: [Parameter]
  public var options: ODEOptions
  public var gradient: GradientMethod
  public private(set) var lastStatistics = ODEStatistics()

  public init(
    dimension: Int, width: Int, delay: Double?, learnDelay: Bool = false, options: ODEOptions,
    gradient: GradientMethod, dtype: DType = .float32, rng: inout RandomState,
    on backend: any Backend
  ) throws {
    if let delay, !(delay > 0 && delay.isFinite) {
      throw ODEError.invalidOptions("the forecaster's delay must be positive, got \(delay)")
    }
    let input = delay == nil ? dimension : 2 * dimension
    mlp = try MLP(
      [input, width, width, dimension], activation: .tanh, dtype: dtype, rng: &rng, on: backend)
    self.delay = delay
    learnedDelay =
      if let delay, learnDelay {
        [Parameter(try Tensor([delay], shape: [1], dtype: dtype, on: backend))]
      } else { [] }
    self.options = options
    self.gradient = gradient
    super.init()
  }

  /// x at `times` (the first is t0, where x = x0 [batch, d]), stacked [times.count, batch, d];
  /// `history(t)` is the observed x at t ≤ t0 (read only by the delay model).
  public func callAsFunction(
    _ x0: Tensor, times: [Double], history: @escaping (Double) throws -> Tensor
  ) throws -> Tensor {
    let mlp = mlp
    let solution: ODESolution
    if let delay {
      let field = DelayVectorField(parameters: mlp) { _, x, delayed in
        try mlp(Tensor.concat([x, delayed[0]], axis: 1))
      }
      solution =
        if let tau = learnedDelay.first {
          try ddeint(
            field, x0, history: .function(history), delays: tau.value, times: times,
            options: options, gradient: gradient)
        } else {
          try ddeint(
            field, x0, history: .function(history), delays: [delay], times: times,
            options: options, gradient: gradient)
        }
    } else {
      solution = try odeint(
        VectorField(parameters: mlp) { _, x in try mlp(x) }, x0, times: times, options: options,
        gradient: gradient)
    }
    lastStatistics = solution.statistics
    return solution.trajectory
  }
}
