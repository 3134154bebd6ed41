import Kernels

/// The models of the model zoo (image classifiers and series forecasters), by the name settings
/// and the command line use.
public enum ModelArchitecture: String, Sendable, NamedSetting {
  /// The Neural ODE paper's ODE-Net: an ODE block solved by any solver, adjoint gradients.
  case odenet
  /// The same network with residual blocks in place of the ODE block.
  case resnet
  /// The ODE block backpropagated directly through fixed RK4 steps.
  case rknet
  /// A deep equilibrium block (`DEQBlock`) in place of the ODE block.
  case deq
  /// The continuous DEQ: the same block, z* the steady state of dz/dt = f(z, x) − z.
  case cdeq
  /// Skip DEQ: the solve starts from a predictor network's z₀, regularised towards z*.
  case skipDEQ = "skip-deq"
  /// Skip DEQ, continuous.
  case skipCDEQ = "skip-cdeq"
  /// Skip Reg. DEQ: the solve starts from f(0, x), regularised towards z*.
  case skipRegDEQ = "skipreg-deq"
  /// Skip Reg. DEQ, continuous.
  case skipRegCDEQ = "skipreg-cdeq"
  /// Pre-activation CIFAR ResNets of depth 6n + 2 (`CIFARResNet`, batch norm, stochastic depth).
  case resnet20, resnet32, resnet44, resnet56, resnet110
  /// Their LM-ResNet versions (Lu et al. 2018): a linear two-step update in every block that
  /// keeps the shape.
  case lmresnet20, lmresnet32, lmresnet44, lmresnet56, lmresnet110
  /// A narrow CIFAR ResNeXt-29 (bottleneck blocks with grouped 3×3 convolutions; cardinality
  /// and group width are settings), and its LM version.
  case resnext, lmresnext

  /// A delay differential block (`DDEBlock`) on [h(t); h(t − τ)] concatenated (ddnn-a).
  case ddnnA = "ddnn-a"
  /// A delay differential block with separate paths, g(h(t), t) + q(h(t − τ)) (ddnn-b).
  case ddnnB = "ddnn-b"

  /// A forecaster of time series: a neural ODE on the observed state (`SeriesForecaster`).
  case nodeSeries = "node-series"
  /// A forecaster of time series: a delay differential network on [x(t); x(t − τ)].
  case ddnnSeries = "ddnn-series"

  /// A continuous normalizing flow (FFJORD) of a density's samples (`ContinuousNormalizingFlow`).
  case cnf

  /// The latent ODE for irregularly sampled series (`LatentODE`): reconstruction and
  /// extrapolation.
  case latentODE = "latent-ode"

  /// Whether the model is a CIFAR ResNeXt (bottleneck blocks).
  public var isResNeXt: Bool { self == .resnext || self == .lmresnext }

  /// Whether the model's block is a `DEQBlock`.
  public var isEquilibrium: Bool {
    ![.odenet, .resnet, .rknet, .ddnnA, .ddnnB, .nodeSeries, .ddnnSeries, .cnf, .latentODE]
      .contains(self)
      && cifarResNet == nil
  }
  /// Whether the model forecasts time series (not an image classifier).
  public var isSeries: Bool { [.nodeSeries, .ddnnSeries].contains(self) }
  /// Whether the model estimates a density from samples (not an image classifier).
  public var isDensity: Bool { self == .cnf }
  /// Whether the model reads series (a forecaster or the latent ODE), not images.
  public var readsSeries: Bool { isSeries || self == .latentODE }
  /// Whether the model's block is a `DDEBlock`.
  public var isDelay: Bool { [.ddnnA, .ddnnB].contains(self) }
  /// Whether a DEQ's fixed point is a steady state (the continuous variants).
  public var isContinuous: Bool { [.cdeq, .skipCDEQ, .skipRegCDEQ].contains(self) }

  /// The depth of a CIFAR ResNet (or ResNeXt) and whether it is the LM version; nil for the
  /// other models.
  public var cifarResNet: (depth: Int, linearMultistep: Bool)? {
    if self == .resnext || self == .lmresnext { return (29, self == .lmresnext) }
    let name = rawValue
    let lm = name.hasPrefix("lmresnet")
    let digits = name.drop(while: { !$0.isNumber })
    guard name.hasPrefix("resnet") || lm, let depth = Int(digits) else { return nil }
    return (depth, lm)
  }

  public static let settingName = "model"
}
