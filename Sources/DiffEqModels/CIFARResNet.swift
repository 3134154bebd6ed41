import DiffEqCore
import Foundation
import Kernels

/// The pre-activation residual block (He et al. 2016, "Identity mappings"). Its branch f is the
/// BasicBlock's conv3×3(ReLU(BN(conv3×3(ReLU(BN(u)))))), the first convolution with the block's
/// stride, or ResNeXt's bottleneck (Xie et al. 2017) conv1×1(ReLU(BN(gconv3×3(ReLU(BN(
/// conv1×1(ReLU(BN(u)))))))), its 3×3 convolution grouped by the cardinality and strided.
/// A plain block computes P(u) + f(u), P the identity or, where the shape changes, a 1×1 strided
/// projection of the pre-activated ReLU(BN(u)). An LM block (with `kappa`) keeps the shape and is
/// combined with the previous state by `Tensor.lmUpdate`.
public final class PreActBlock: Module {
  /// The branch's form.
  public enum Branch: Sendable, Equatable {
    case basic
    /// 1×1 to `inner` channels, a 3×3 convolution in `cardinality` groups, 1×1 back out.
    case bottleneck(inner: Int, cardinality: Int)
  }

  public let norm1: BatchNorm
  public let conv1: Conv2d
  public let norm2: BatchNorm
  public let conv2: Conv2d
  /// The bottleneck's last stage (nil for a BasicBlock).
  public let norm3: BatchNorm?
  public let conv3: Conv2d?
  public let projection: Conv2d?
  /// The LM coefficient's pre-image: k = tanh(kappa), so |k| < 1 (zero-stability) whatever the
  /// optimiser does. Nil for a plain block.
  public let kappa: Parameter?

  /// - Parameter linearMultistep: an LM block; k is drawn from U[−0.1, 0] (the paper's
  ///   convention) and stored as atanh(k).
  public init(
    _ inChannels: Int, _ outChannels: Int, stride: Int, linearMultistep: Bool,
    branch: Branch = .basic, dtype: DType, rng: inout RandomState, on backend: any Backend
  ) throws {
    if linearMultistep && (stride != 1 || inChannels != outChannels) {
      throw TensorError.invalidArgument(
        op: "PreActBlock", reason: "an LM block keeps the shape (stride 1, equal channels)")
    }
    norm1 = try BatchNorm(channels: inChannels, dtype: dtype, on: backend)
    switch branch {
    case .basic:
      conv1 = try Conv2d(
        inChannels, outChannels, kernelSize: 3, stride: stride, padding: 1, bias: false,
        dtype: dtype, rng: &rng, on: backend)
      norm2 = try BatchNorm(channels: outChannels, dtype: dtype, on: backend)
      conv2 = try Conv2d(
        outChannels, outChannels, kernelSize: 3, padding: 1, bias: false, dtype: dtype,
        rng: &rng, on: backend)
      (norm3, conv3) = (nil, nil)
    case .bottleneck(let inner, let cardinality):
      conv1 = try Conv2d(
        inChannels, inner, kernelSize: 1, bias: false, dtype: dtype, rng: &rng, on: backend)
      norm2 = try BatchNorm(channels: inner, dtype: dtype, on: backend)
      conv2 = try Conv2d(
        inner, inner, kernelSize: 3, stride: stride, padding: 1, groups: cardinality,
        bias: false, dtype: dtype, rng: &rng, on: backend)
      norm3 = try BatchNorm(channels: inner, dtype: dtype, on: backend)
      conv3 = try Conv2d(
        inner, outChannels, kernelSize: 1, bias: false, dtype: dtype, rng: &rng, on: backend)
    }
    projection =
      stride != 1 || inChannels != outChannels
      ? try Conv2d(
        inChannels, outChannels, kernelSize: 1, stride: stride, bias: false, dtype: dtype,
        rng: &rng, on: backend)
      : nil
    if linearMultistep {
      let k = -0.1 * rng.nextUniform()
      kappa = Parameter(try Tensor([atanh(k)], shape: [1], dtype: dtype, on: backend))
    } else {
      kappa = nil
    }
    super.init()
  }

  /// k = tanh(kappa), recorded (nil for a plain block).
  public var k: Tensor? {
    get throws { try kappa?.value.tanh() }
  }

  /// The residual branch f(u).
  public func branch(_ u: Tensor) throws -> Tensor {
    try branch(preActivated: norm1(u, relu: true))
  }

  /// f(u) from the pre-activation a = ReLU(BN(u)).
  func branch(preActivated a: Tensor) throws -> Tensor {
    let h = try conv2(norm2(conv1(a), relu: true))
    guard let norm3, let conv3 else { return h }
    return try conv3(norm3(h, relu: true))
  }

  /// P(u) + scale·f(u), one fused combination; P(u) alone when scale is 0 (a dropped block).
  public func residual(_ u: Tensor, scale: Double = 1) throws -> Tensor {
    let a = projection == nil && scale == 0 ? u : try norm1(u, relu: true)
    let shortcut = try projection.map { try $0(a) } ?? u
    if scale == 0 { return shortcut }
    return try .linearCombination([shortcut, branch(preActivated: a)], [1, scale])
  }

  /// The LM step (1 − k)·u + k·previous + scale·f(u); the branch is not evaluated when scale is
  /// 0 (a dropped block).
  public func lmStep(_ u: Tensor, previous: Tensor, scale: Double = 1) throws -> Tensor {
    guard let k = try k else {
      throw TensorError.invalidArgument(op: "PreActBlock", reason: "not an LM block")
    }
    let f = scale == 0 ? nil : try branch(preActivated: norm1(u, relu: true))
    return try u.lmUpdate(previous: previous, branch: f, k: k, scale: scale)
  }
}

/// The CIFAR ResNets of He et al. in their pre-activation form, and their LM versions (Lu et al.,
/// ICML 2018): a 3×3 stem to 16 channels, three stages of n blocks (16, 32, 64 channels, strides
/// 1, 2, 2; depth 6n + 2), BN-ReLU, global average pooling and a linear head. With a bottleneck,
/// a narrow CIFAR ResNeXt (Xie et al. 2017): stages of 32, 64, 128 channels whose blocks'
/// grouped 3×3 convolutions have cardinality × groupWidth × (1, 2, 4) channels (depth 9n + 2;
/// ResNeXt-29's CIFAR stages are 256, 512, 1024).
///
/// In the LM version every block after the first of a stage is an LM block,
/// u_{n+1} = (1 − k_n)·u_n + k_n·u_{n−1} + f_n(u_n); the first block of a stage stays plain (a
/// projection shortcut where the shape changes) and its output serves as u_{n−1} of the block
/// after it, so that block's first step is plain too (its k_n multiplies u_n − u_{n−1} = 0).
/// The identity shortcut of stage 1's first block is kept in both versions, so a ResNet and its
/// LM version differ exactly by the k_n.
///
/// Stochastic depth (`stochasticDepth`) drops the branches of all 3n blocks in training.
public final class CIFARResNet: Module, UnaryLayer {
  public let stem: Conv2d
  public let blocks: [PreActBlock]
  public let headNorm: BatchNorm
  public let classifier: Linear
  public let depth: Int
  public let stochasticDepth: StochasticDepth
  /// The training step whose drops the next training-mode call uses; each such call advances it.
  /// A trainer sets it from its position so that a resumed run drops the same blocks.
  public var step: UInt64 = 0

  /// Throws unless depth = 6n + 2 (9n + 2 with a bottleneck; n ≥ 1), survival lies in (0, 1]
  /// and the bottleneck's sizes are positive.
  public init(
    depth: Int, linearMultistep: Bool, inputChannels: Int, classes: Int, survival: Double = 1,
    bottleneck: (cardinality: Int, groupWidth: Int)? = nil, dtype: DType = .float32,
    seed: UInt64 = 0, rng: inout RandomState, on backend: any Backend
  ) throws {
    let per = bottleneck == nil ? 6 : 9
    guard depth >= per + 2, (depth - 2) % per == 0 else {
      throw TensorError.invalidArgument(
        op: "CIFARResNet",
        reason: bottleneck == nil
          ? "depth \(depth) is not 6n + 2 (20, 32, 44, 56, 110, …)"
          : "depth \(depth) of a bottleneck network is not 9n + 2 (11, 20, 29, …)")
    }
    if let b = bottleneck, b.cardinality < 1 || b.groupWidth < 1 {
      throw TensorError.invalidArgument(
        op: "CIFARResNet",
        reason: "cardinality \(b.cardinality) and group width \(b.groupWidth) must be positive")
    }
    stochasticDepth = try StochasticDepth(survival: survival, seed: seed)
    self.depth = depth
    let n = (depth - 2) / per
    stem = try Conv2d(
      inputChannels, 16, kernelSize: 3, padding: 1, bias: false, dtype: dtype, rng: &rng,
      on: backend)
    var blocks: [PreActBlock] = []
    var channels = 16
    let widths = bottleneck == nil ? [16, 32, 64] : [32, 64, 128]
    for (stage, width) in widths.enumerated() {
      let branch: PreActBlock.Branch =
        bottleneck.map {
          .bottleneck(inner: $0.cardinality * $0.groupWidth << stage, cardinality: $0.cardinality)
        } ?? .basic
      for i in 0..<n {
        blocks.append(
          try PreActBlock(
            channels, width, stride: i == 0 && stage > 0 ? 2 : 1,
            linearMultistep: linearMultistep && i > 0, branch: branch, dtype: dtype, rng: &rng,
            on: backend))
        channels = width
      }
    }
    self.blocks = blocks
    headNorm = try BatchNorm(channels: channels, dtype: dtype, on: backend)
    classifier = try Linear(channels, classes, dtype: dtype, rng: &rng, on: backend)
    super.init()
  }

  /// Logits [N, classes] for images [N, C, H, W].
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try classifier(headNorm(blocks(stem(x)), relu: true).globalAvgPool())
  }

  /// The state after the first `count` blocks (all by default) from the stem's output u₀. In
  /// training mode one call is one step of stochastic depth.
  public func blocks(_ u0: Tensor, count: Int? = nil) throws -> Tensor {
    let training = isTraining
    let drops =
      training && stochasticDepth.survival < 1
      ? stochasticDepth.dropped(blocks: blocks.count, step: step)
      : [Bool](repeating: false, count: blocks.count)
    if training { step &+= 1 }
    var u = u0
    var previous = u
    for (i, block) in blocks.prefix(count ?? blocks.count).enumerated() {
      let scale = stochasticDepth.scale(
        block: i, of: blocks.count, dropped: drops[i], training: training)
      if block.kappa != nil {
        let next = try block.lmStep(u, previous: previous, scale: scale)
        previous = u
        u = next
      } else {
        u = try block.residual(u, scale: scale)
        previous = u
      }
    }
    return u
  }

  /// The LM coefficients k_n in block order (empty for a plain ResNet); reads the device.
  public func lmCoefficients() throws -> [Double] {
    try blocks.compactMap { try $0.k?.item() }
  }
}
