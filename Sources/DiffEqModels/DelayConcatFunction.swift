import DiffEqCore
import DiffEqODE
import Kernels

/// ddnn-a's vector field, on the channel concatenation of the current and the delayed features:
/// f(t, h(t), h(t − τ)) = GN(convₜ(ReLU(GN(convₜ(ReLU(GN([h(t); h(t − τ)]))))))), ODE-Net's f
/// (`ConvODEFunction`) with a first convolution that reads 2C channels (and t).
///
/// The Delay Differential Neural Networks paper (Anumasa & Srijith) is known to us only by its
/// abstract: this is the standard concatenation form of dh/dt = f(t, h(t), h(t − τ); θ).
public final class DelayConcatFunction: Module {
  public let norm1: GroupNorm
  public let conv1: ConcatConv2d
  public let norm2: GroupNorm
  public let conv2: ConcatConv2d
  public let norm3: GroupNorm

  public init(
    channels: Int, groups: Int? = nil, dtype: DType = .float32, rng: inout RandomState,
    on backend: any Backend
  ) throws {
    let groups = groups ?? GroupNorm.defaultGroups(channels: channels)
    norm1 = try GroupNorm(groups: 2 * groups, channels: 2 * channels, dtype: dtype, on: backend)
    conv1 = try ConcatConv2d(2 * channels, channels, dtype: dtype, rng: &rng, on: backend)
    norm2 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    conv2 = try ConcatConv2d(channels, channels, dtype: dtype, rng: &rng, on: backend)
    norm3 = try GroupNorm(groups: groups, channels: channels, dtype: dtype, on: backend)
    super.init()
  }

  public func callAsFunction(_ t: Double, _ h: Tensor, _ delayed: Tensor) throws -> Tensor {
    var x = try norm1(Tensor.concat([h, delayed], axis: 1), relu: true)
    x = try conv1(t, x)
    x = try norm2(x, relu: true)
    x = try conv2(t, x)
    return try norm3(x)
  }

  /// This function as a single-delay right-hand side whose parameters are this module's.
  public var field: DelayVectorField {
    DelayVectorField(parameters: self) { [unowned self] t, h, delayed in
      try self(t, h, delayed[0])
    }
  }
}
