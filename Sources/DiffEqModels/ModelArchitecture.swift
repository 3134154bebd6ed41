import Kernels

/// The image classifiers of the model zoo, by the name settings and the command line use.
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

  public static let settingName = "model"
}
