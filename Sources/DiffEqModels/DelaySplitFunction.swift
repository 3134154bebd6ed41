import DiffEqCore
import DiffEqODE
import Kernels

/// ddnn-b's vector field, separate paths for the current and the delayed features:
/// f(t, h(t), h(t − τ)) = g(t, h(t)) + q(h(t − τ)), g ODE-Net's f (`ConvODEFunction`) and q a
/// 1×1 convolution, with independent parameters.
///
/// The Delay Differential Neural Networks paper (Anumasa & Srijith) is known to us only by its
/// abstract: this is the standard additive form of dh/dt = f(t, h(t), h(t − τ); θ).
public final class DelaySplitFunction: Module {
  public let current: ConvODEFunction
  public let delayedPath: Conv2d

  public init(
    channels: Int, groups: Int? = nil, dtype: DType = .float32, rng: inout RandomState,
    on backend: any Backend
  ) throws {
    current = try ConvODEFunction(
      channels: channels, groups: groups, dtype: dtype, rng: &rng, on: backend)
    delayedPath = try Conv2d(
      channels, channels, kernelSize: 1, padding: 0, dtype: dtype, rng: &rng, on: backend)
    super.init()
  }

  public func callAsFunction(_ t: Double, _ h: Tensor, _ delayed: Tensor) throws -> Tensor {
    try current(t, h) + delayedPath(delayed)
  }

  /// This function as a single-delay right-hand side whose parameters are this module's.
  public var field: DelayVectorField {
    DelayVectorField(parameters: self) { [unowned self] t, h, delayed in
      try self(t, h, delayed[0])
    }
  }
}
