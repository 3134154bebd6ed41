import DiffEqCore
import DiffEqODE
import Kernels

/// The models this library trains, built by name so the CLI, the tests and the benchmarks
/// construct them the same way.
public enum ModelZoo {
  /// What a model needs to know about its task and solver.
  public struct Configuration: Sendable {
    public var inputChannels = 1
    public var classes = 10
    public var dtype: DType = .float32
    public var seed: UInt64 = 0
    /// ODE-Net's solver (RK-Net always backpropagates through fixed-step RK4).
    public var ode = ODEOptions(solver: .dopri5, rtol: 1e-3, atol: 1e-3)
    public var gradient: GradientMethod = .backsolve
    /// RK-Net's number of RK4 steps over [0, 1].
    public var rkSteps = 4
    /// ResNet's number of residual blocks.
    public var residualBlocks = 6
    /// Channels of every layer after the first (the paper's 64).
    public var width = 64
    /// Groups of every GroupNorm; nil: `GroupNorm.defaultGroups(channels: width)`. A model
    /// imported from torchdiffeq has min(32, width), its rule (the same at width 64).
    public var normGroups: Int? = nil
    /// DEQ's fixed-point search and its gradient.
    public var deqForward = FixedPointOptions(tolerance: 1e-3, maxIterations: 30)
    public var deqGradient = EquilibriumGradient.implicit(
      FixedPointOptions(tolerance: 1e-3, maxIterations: 30))
    /// The continuous DEQ's integration to its steady state.
    public var deqSteadyState = SteadyStateOptions()
    /// The weight λ of the Skip variants' regulariser λ·mean|z₀ − z*|.
    public var skipWeight = 0.01
    /// The CIFAR ResNets' stochastic-depth survival p_L of the last block (1: no dropping).
    public var survival = 1.0
    /// The CIFAR ResNeXt's groups in each grouped convolution, and the channels of each group
    /// in the first stage (doubling per stage).
    public var cardinality = 4
    public var groupWidth = 4
    /// The DDNN models' delay τ ∈ (0, 1); their block integrates over [0, 1] with `ode` and
    /// `gradient` (`.backsolve` and `.checkpointed` both mean `ddeint`'s segment adjoint).
    public var delay = 0.5
    /// ddnn-series: τ is a trained parameter starting at `delay`.
    public var learnDelay = false
    public init() {}
  }

  /// A freshly initialised model.
  /// - `odenet`: the ODE block integrated by `configuration.ode`, gradients by `configuration.gradient`.
  /// - `resnet`: `residualBlocks` residual blocks in place of the ODE block.
  /// - `rknet`: the ODE block's function, backpropagated directly through `rkSteps` RK4 steps.
  /// - `deq`: a `DEQBlock` solved by `deqForward`, differentiated by `deqGradient`.
  /// - `cdeq`: the same block, its steady state integrated by `deqSteadyState`.
  /// - `skip-deq`, `skip-cdeq`, `skipreg-deq`, `skipreg-cdeq`: their Skip and Skip Reg. variants,
  ///   regularised with weight `skipWeight` (`ImageClassifier.auxiliaryLoss`).
  /// - `resnet20` … `resnet110`, `lmresnet20` … `lmresnet110`: a `CIFARResNet` (`width`, the
  ///   norm groups and the residual-block count do not apply), stochastic depth with `survival`,
  ///   its drops drawn from `seed`; `resnext`, `lmresnext`: the same with bottleneck blocks of
  ///   `cardinality` groups of `groupWidth` channels (ResNeXt-29's depth, narrow stages).
  /// - `ddnn-a`, `ddnn-b`: a `DDEBlock` with delay `delay` in place of the ODE block.
  public static func make(
    _ architecture: ModelArchitecture, _ c: Configuration, on backend: any Backend
  ) throws -> ImageClassifier {
    var rng = RandomState(seed: c.seed)
    if let (depth, lm) = architecture.cifarResNet {
      return ImageClassifier(
        architecture: architecture,
        network: try CIFARResNet(
          depth: depth, linearMultistep: lm, inputChannels: c.inputChannels, classes: c.classes,
          survival: c.survival,
          bottleneck: architecture.isResNeXt ? (c.cardinality, c.groupWidth) : nil,
          dtype: c.dtype, seed: c.seed, rng: &rng, on: backend))
    }
    let features: (inout RandomState) throws -> [Module]
    switch architecture {
    case .odenet:
      features = { rng in
        [
          try ODEBlock(
            channels: c.width, groups: c.normGroups, options: c.ode, gradient: c.gradient,
            dtype: c.dtype, rng: &rng, on: backend)
        ]
      }
    case .rknet:
      features = { rng in
        [
          try ODEBlock(
            channels: c.width, groups: c.normGroups, options: .fixed(.rk4, steps: c.rkSteps),
            gradient: .direct,
            dtype: c.dtype, rng: &rng, on: backend)
        ]
      }
    case .deq, .cdeq, .skipDEQ, .skipCDEQ, .skipRegDEQ, .skipRegCDEQ:
      let skip: DEQBlock.SkipStart? =
        switch architecture {
        case .skipDEQ, .skipCDEQ: .predicted(weight: c.skipWeight)
        case .skipRegDEQ, .skipRegCDEQ: .firstIterate(weight: c.skipWeight)
        default: nil
        }
      features = { rng in
        [
          try DEQBlock(
            channels: c.width, groups: c.normGroups, forward: c.deqForward,
            gradient: c.deqGradient,
            continuous: architecture.isContinuous ? c.deqSteadyState : nil, skip: skip,
            dtype: c.dtype, rng: &rng, on: backend)
        ]
      }
    case .resnet20, .resnet32, .resnet44, .resnet56, .resnet110, .lmresnet20, .lmresnet32,
      .lmresnet44, .lmresnet56, .lmresnet110, .resnext, .lmresnext:
      throw TensorError.invalidArgument(op: "ModelZoo", reason: "\(architecture) is built above")
    case .ddnnA, .ddnnB:
      features = { rng in
        [
          try DDEBlock(
            channels: c.width, groups: c.normGroups,
            combination: architecture == .ddnnA ? .concatenation : .separatePaths,
            delay: c.delay, options: c.ode, gradient: c.gradient, dtype: c.dtype, rng: &rng,
            on: backend)
        ]
      }
    case .nodeSeries, .ddnnSeries, .latentODE:
      throw ODEError.invalidOptions("\(architecture) reads series, not images")
    case .cnf:
      throw ODEError.invalidOptions("\(architecture) estimates densities: see makeFlow")
    case .resnet:
      features = { rng in
        try (0..<c.residualBlocks).map { _ in
          try ResidualBlock(
            channels: c.width, groups: c.normGroups, dtype: c.dtype, rng: &rng, on: backend)
        }
      }
    }
    return try ImageClassifier(
      architecture: architecture, inputChannels: c.inputChannels, classes: c.classes,
      width: c.width,
      groups: c.normGroups,
      features: features,
      dtype: c.dtype, rng: &rng, on: backend)
  }

  /// A fresh `node-series` or `ddnn-series` forecaster of `dimension`-dimensional series: an MLP
  /// of `width` hidden units, `ode` and `gradient` as the classifiers', delay `delay`.
  public static func makeForecaster(
    _ architecture: ModelArchitecture, _ c: Configuration, dimension: Int,
    on backend: any Backend
  ) throws -> SeriesForecaster {
    guard architecture.isSeries else {
      throw ODEError.invalidOptions("\(architecture) is an image classifier, not a forecaster")
    }
    var rng = RandomState(seed: c.seed)
    return try SeriesForecaster(
      dimension: dimension, width: c.width, delay: architecture == .ddnnSeries ? c.delay : nil,
      learnDelay: c.learnDelay, options: c.ode, gradient: c.gradient, dtype: c.dtype, rng: &rng,
      on: backend)
  }

  /// A fresh continuous normalizing flow of `dimension`-dimensional samples: FFJORD's toy field
  /// (3 ConcatSquash layers of `width`, tanh, T = 0.5), `ode` and `gradient` as the classifiers'.
  public static func makeFlow(
    _ c: Configuration, dimension: Int, trace: TraceEstimator, on backend: any Backend
  ) throws -> ContinuousNormalizingFlow {
    var rng = RandomState(seed: c.seed)
    return try ContinuousNormalizingFlow(
      dimension: dimension, width: c.width, hidden: 3, options: c.ode, gradient: c.gradient,
      trace: trace, dtype: c.dtype, rng: &rng, on: backend)
  }
}
