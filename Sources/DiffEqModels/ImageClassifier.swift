import DiffEqCore
import DiffEqODE
import Kernels

/// An image classifier of the model zoo: the Neural ODE paper's MNIST layout (a downsampling
/// stem, a feature block — an ODE block, residual blocks, a DEQ or an RK-Net — and a pooling
/// head), or a CIFAR ResNet (`network`), which brings its own stem and head.
///
/// Stem: Conv(in→64, 3×3) → GN → ReLU → Conv(64→64, 4×4, stride 2, pad 1) → GN → ReLU →
/// Conv(64→64, 4×4, stride 2, pad 1) (28×28 → 6×6 for MNIST). Head: GN → ReLU → global average
/// pool → Linear(64→classes). 64 is the paper's width; `width` scales it (tests use small ones).
/// The stem and head parts are nil for a CIFAR ResNet.
public final class ImageClassifier: Module, UnaryLayer {
  public let stem0: Conv2d?
  public let stemNorm0: GroupNorm?
  public let stem1: Conv2d?
  public let stemNorm1: GroupNorm?
  public let stem2: Conv2d?
  /// An `ODEBlock`, a `DEQBlock`, or residual blocks.
  public let features: [Module]
  public let headNorm: GroupNorm?
  public let classifier: Linear?
  /// The whole network of a CIFAR ResNet (`resnet20` … `lmresnet110`).
  public let network: CIFARResNet?
  public let architecture: ModelArchitecture

  public init(
    architecture: ModelArchitecture, inputChannels: Int, classes: Int, width: Int = 64,
    groups: Int? = nil,
    features: (inout RandomState) throws -> [Module], dtype: DType = .float32,
    rng: inout RandomState, on backend: any Backend
  ) throws {
    let groups = groups ?? GroupNorm.defaultGroups(channels: width)
    self.architecture = architecture
    stem0 = try Conv2d(inputChannels, width, kernelSize: 3, dtype: dtype, rng: &rng, on: backend)
    stemNorm0 = try GroupNorm(groups: groups, channels: width, dtype: dtype, on: backend)
    stem1 = try Conv2d(
      width, width, kernelSize: 4, stride: 2, padding: 1, dtype: dtype, rng: &rng, on: backend)
    stemNorm1 = try GroupNorm(groups: groups, channels: width, dtype: dtype, on: backend)
    stem2 = try Conv2d(
      width, width, kernelSize: 4, stride: 2, padding: 1, dtype: dtype, rng: &rng, on: backend)
    self.features = try features(&rng)
    headNorm = try GroupNorm(groups: groups, channels: width, dtype: dtype, on: backend)
    classifier = try Linear(width, classes, dtype: dtype, rng: &rng, on: backend)
    network = nil
    super.init()
  }

  /// A CIFAR ResNet as a zoo classifier.
  public init(architecture: ModelArchitecture, network: CIFARResNet) {
    self.architecture = architecture
    self.network = network
    (stem0, stemNorm0, stem1, stemNorm1, stem2) = (nil, nil, nil, nil, nil)
    features = []
    headNorm = nil
    classifier = nil
    super.init()
  }

  /// Logits [N, classes] for images [N, C, H, W].
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    if let network { return try network(x) }
    guard let stem0, let stemNorm0, let stem1, let stemNorm1, let stem2, let headNorm,
      let classifier
    else {
      throw TensorError.invalidArgument(op: "ImageClassifier", reason: "no stem or head")
    }
    var h = try stemNorm0(stem0(x), relu: true)
    h = try stemNorm1(stem1(h), relu: true)
    h = try stem2(h)
    for block in features {
      guard let layer = block as? any UnaryLayer else {
        throw TensorError.invalidArgument(
          op: "ImageClassifier", reason: "feature block is not a layer")
      }
      h = try layer(h)
    }
    return try classifier(headNorm(h, relu: true).globalAvgPool())
  }

  /// What the most recent forward pass adds to the training loss besides the task's own (the
  /// Skip DEQs' regulariser), recorded; nil when nothing.
  public var auxiliaryLoss: Tensor? { equilibriumBlock?.regularizer }

  /// The equilibrium block, for the DEQ models (nil otherwise).
  public var equilibriumBlock: DEQBlock? { features.first as? DEQBlock }

  /// The function evaluations of the solver block's most recent pass (ODE-Net, RK-Net, DEQ,
  /// DDNN).
  public var functionEvaluations: FunctionEvaluations? {
    switch features.first {
    case let block as ODEBlock: return block.lastStatistics.evaluations
    case let block as DEQBlock: return block.lastStatistics.evaluations
    case let block as DDEBlock: return block.lastStatistics.evaluations
    default: return nil
    }
  }
}
