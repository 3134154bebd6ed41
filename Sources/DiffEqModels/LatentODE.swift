import DiffEqCore
import DiffEqODE
import Kernels

/// The latent ODE of Chen et al. 2018 (§5) for irregularly sampled d-dimensional series, the
/// variational autoencoder of its `latent_ode.py`, with a GRU for its RNN:
/// - encoder: a `GRUCell` of `width` units runs backward in time over a series' observations,
///   from h = 0 at its last one; its input at observation tᵢ is [x(tᵢ); tᵢ₊₁ − tᵢ], the value and
///   the gap to the observation the backward pass read before it (0 at the last), so the cell
///   sees how irregular the sampling is. A `Linear` maps the final h to the mean μ and the
///   log-variance log σ² of q(z₀ | x) = N(μ, diag σ²) in the `latentDimension`-dimensional
///   latent space.
/// - z₀ = μ + σ ⊙ ε with ε ~ N(0, I) (the reparameterisation: the sample is differentiable in
///   μ and σ).
/// - decoder: z(t) = odeint(f, z₀, times) with f an MLP L → width → width → L (ELU, torchdiffeq's
///   example) through its tape-free VJP, then an MLP L → width → d (ReLU) to each observation.
///
/// z₀ is z at each series' first observation time; times are relative to it.
public final class LatentODE: Module {
  public let encoder: GRUCell
  /// h ↦ [μ, log σ²], [2L] outputs.
  public let encoderOutput: Linear
  /// The latent dynamics f(z).
  public let dynamics: MLP
  /// z ↦ x.
  public let decoder: MLP
  public let dimension: Int
  public let latentDimension: Int
  public var options: ODEOptions
  public var gradient: GradientMethod
  public private(set) var lastStatistics = ODEStatistics()

  /// One observation time of a batch on the encoder's way back: `input` [batch, d + 1] holds
  /// each series' [x(t); gap] at this time, `mask` [batch, 1] is 1 for the series observed
  /// here and 0 for the others, whose state the step leaves as it was (nil: all observed).
  public struct EncoderStep {
    public var input: Tensor
    public var mask: Tensor?

    public init(input: Tensor, mask: Tensor?) {
      self.input = input
      self.mask = mask
    }
  }

  public init(
    dimension: Int, latentDimension: Int, width: Int, options: ODEOptions,
    gradient: GradientMethod, dtype: DType = .float32, rng: inout RandomState,
    on backend: any Backend
  ) throws {
    guard dimension >= 1, latentDimension >= 1, width >= 1 else {
      throw TensorError.invalidArgument(
        op: "LatentODE",
        reason:
          "dimension \(dimension), latent dimension \(latentDimension) and width \(width) must be ≥ 1"
      )
    }
    self.dimension = dimension
    self.latentDimension = latentDimension
    encoder = try GRUCell(
      inputSize: dimension + 1, hiddenSize: width, dtype: dtype, rng: &rng, on: backend)
    encoderOutput = try Linear(width, 2 * latentDimension, dtype: dtype, rng: &rng, on: backend)
    dynamics = try MLP(
      [latentDimension, width, width, latentDimension], activation: .elu, dtype: dtype,
      rng: &rng, on: backend)
    decoder = try MLP(
      [latentDimension, width, dimension], activation: .relu, dtype: dtype, rng: &rng,
      on: backend)
    self.options = options
    self.gradient = gradient
    super.init()
  }

  /// μ and log σ² [batch, L] of q(z₀ | x), from `steps` in increasing time (the GRU reads them
  /// from the last).
  public func encode(_ steps: [EncoderStep]) throws -> (mean: Tensor, logVariance: Tensor) {
    guard let first = steps.first else {
      throw TensorError.invalidArgument(op: "LatentODE.encode", reason: "no observations")
    }
    let p = encoderOutput.weight.value
    var h = try Tensor.zeros(
      [first.input.shape[0], encoder.hiddenSize], dtype: p.dtype, on: p.backend)
    for step in steps.reversed() {
      let next = try encoder(step.input, h)
      h = try step.mask.map { try h + $0 * (next - h) } ?? next
    }
    let out = try encoderOutput(h)
    return (
      try out.slice(axis: 1, 0..<latentDimension),
      try out.slice(axis: 1, latentDimension..<(2 * latentDimension))
    )
  }

  /// z₀ = μ + exp(½ log σ²) ⊙ ε.
  public static func sample(mean: Tensor, logVariance: Tensor, noise: Tensor) throws -> Tensor {
    try mean + (logVariance * 0.5).exp() * noise
  }

  /// KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σⱼ (μⱼ² + σⱼ² − log σⱼ² − 1) per row: [batch].
  public static func klToStandardNormal(mean: Tensor, logVariance: Tensor) throws -> Tensor {
    try ((mean.square() + logVariance.exp() - logVariance - 1) * 0.5).sum(axes: [1])
  }

  /// The decoded observations [times.count, batch, d] at `times` (increasing, the first 0, z₀'s
  /// time) from z₀ [batch, L].
  ///
  /// A fixed-step solver steps on its own grid 0, h, 2h, … (h its `stepSize`, else tN/`steps`)
  /// up to the last time, and z at the given times is linearly interpolated between grid
  /// points, as torchdiffeq's fixed-grid solvers do: a series' many observation times would
  /// otherwise each cost a step, whatever h. Adaptive solvers return z at the times themselves.
  public func decode(_ z0: Tensor, times: [Double]) throws -> Tensor {
    let batch = z0.shape[0]
    let end = times[times.count - 1]
    var z: Tensor
    if times.count == 1 {
      // Series of one observation each: nothing to integrate.
      lastStatistics = ODEStatistics()
      z = try z0.reshaped([1, batch, latentDimension])
    } else if !options.solver.isAdaptive,
      let h = options.stepSize ?? options.steps.map({ end / Double($0) })
    {
      let n = max(1, Int((end / h * (1 - 1e-12)).rounded(.up)))
      let grid = (0...n).map { min(end, Double($0) * h) }
      var fixed = options
      fixed.stepSize = nil
      fixed.steps = nil  // one step per grid interval
      let solution = try odeint(
        dynamics.vectorField, z0, times: grid, options: fixed, gradient: gradient)
      lastStatistics = solution.statistics
      var weights = [Double](repeating: 0, count: times.count * grid.count)
      for (i, t) in times.enumerated() {
        let k = min(n - 1, Int(t / h))
        let w = (t - grid[k]) / (grid[k + 1] - grid[k])
        weights[i * grid.count + k] = 1 - w
        weights[i * grid.count + k + 1] = w
      }
      let interpolation = try Tensor(
        weights, shape: [times.count, grid.count], dtype: z0.dtype, on: z0.backend)
      z = try interpolation.matmul(
        solution.trajectory.reshaped([grid.count, batch * latentDimension]))
    } else {
      let solution = try odeint(
        dynamics.vectorField, z0, times: times, options: options, gradient: gradient)
      lastStatistics = solution.statistics
      z = solution.trajectory
    }
    return try decoder(z.reshaped([times.count * batch, latentDimension]))
      .reshaped([times.count, batch, dimension])
  }
}
