import DiffEqCore
import Kernels

/// A convolution that sees the time t as one extra constant input channel, the first:
/// y = conv([t·1, x], W) with W [out, 1 + in, k, k], input channel 0 the time's. This is
/// torchdiffeq's ConcatConv2d (`torch.cat([tt, x], 1)`), weight layout included, so its weights
/// map one to one (checkpoint format 1 put the time last; `CheckpointFormat` converts those).
public final class ConcatConv2d: Module {
  public let conv: Conv2d

  public init(
    _ inChannels: Int, _ outChannels: Int, kernelSize: Int = 3, stride: Int = 1,
    padding: Int = 1, dtype: DType = .float32, rng: inout RandomState, on backend: any Backend
  ) throws {
    conv = try Conv2d(
      inChannels + 1, outChannels, kernelSize: kernelSize, stride: stride, padding: padding,
      dtype: dtype, rng: &rng, on: backend)
    super.init()
  }

  public func callAsFunction(_ t: Double, _ x: Tensor) throws -> Tensor {
    guard x.rank == 4 else {
      throw TensorError.invalidShape(op: "ConcatConv2d", shape: x.shape, reason: "expected NCHW")
    }
    return try x.timeConcatConv2d(
      time: t, weight: conv.weight.value, bias: conv.bias?.value, stride: conv.stride,
      padding: conv.padding)
  }
}
