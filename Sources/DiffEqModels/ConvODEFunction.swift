import DiffEqCore
import DiffEqODE
import Kernels

/// The vector field of the MNIST ODE-Net (Chen et al. 2018, torchdiffeq's odenet_mnist):
/// f(t, h) = GN(convₜ(ReLU(GN(convₜ(ReLU(GN(h))))))) with 3×3 ConcatConv2d layers that see t as a
/// channel and GroupNorm with `groups` groups (`GroupNorm.defaultGroups` by default: 32 at 64
/// channels).
public final class ConvODEFunction: Module {
  public let norm1: GroupNorm
  public let conv1: ConcatConv2d
  public let norm2: GroupNorm
  public let conv2: ConcatConv2d
  public let norm3: GroupNorm

  public init(
    channels: Int, groups: Int? = nil, dtype: DType = .float32, rng: inout RandomState,
    on backend: any Backend
  )
    throws
  {
    let groups = groups ?? GroupNorm.defaultGroups(channels: channels)
    norm1 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    conv1 = try ConcatConv2d(channels, channels, dtype: dtype, rng: &rng, on: backend)
    norm2 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    conv2 = try ConcatConv2d(channels, channels, dtype: dtype, rng: &rng, on: backend)
    norm3 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    super.init()
  }

  public func callAsFunction(_ t: Double, _ h: Tensor) throws -> Tensor {
    var x = try norm1(h, relu: true)
    x = try conv1(t, x)
    x = try norm2(x, relu: true)
    x = try conv2(t, x)
    return try norm3(x)
  }

  /// This function as an ODE right-hand side whose parameters are this module's.
  public var field: VectorField {
    VectorField(parameters: self) { [unowned self] t, h in try self(t, h) }
  }
}
