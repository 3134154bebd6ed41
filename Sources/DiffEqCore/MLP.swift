import Kernels

/// The point-wise nonlinearities an `MLP` applies between its layers.
public enum Activation: String, Sendable, CaseIterable {
  case tanh, relu, softplus, sigmoid, elu

  var op: UnaryOp {
    switch self {
    case .tanh: .tanh
    case .relu: .relu
    case .softplus: .softplus
    case .sigmoid: .sigmoid
    case .elu: .elu
    }
  }
}

/// A multilayer perceptron: h₀ = x, hᵢ = σ(hᵢ₋₁·Wᵢᵀ + bᵢ) for the hidden layers and a linear
/// output layer, hₗ = hₗ₋₁·Wₗᵀ + bₗ. `widths` lists every layer's width, input first:
/// `MLP([2, 50, 2], activation: .tanh)` is torchdiffeq's spiral network.
///
/// Besides the recorded forward pass (`callAsFunction`), it has a hand-derived vector-Jacobian
/// product that records nothing. Small MLP vector fields are cheaper than the bookkeeping of a
/// tape, and the backsolve adjoint needs one VJP per stage, so `vectorField` (in the ODE layer)
/// hands the adjoint that VJP instead of a tape.
public final class MLP: Module, UnaryLayer {
  public let layers: [Linear]
  public let activation: Activation

  public init(
    _ widths: [Int], activation: Activation = .tanh, dtype: DType = .float32,
    rng: inout RandomState, on backend: any Backend
  ) throws {
    guard widths.count >= 2, widths.allSatisfy({ $0 > 0 }) else {
      throw TensorError.invalidArgument(
        op: "MLP", reason: "widths \(widths) need an input and an output width, all positive")
    }
    layers = try zip(widths, widths.dropFirst()).map { i, o in
      try Linear(i, o, dtype: dtype, rng: &rng, on: backend)
    }
    self.activation = activation
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try forward(x, weights: layers.map { $0.weight.value }, biases: layers.map { $0.bias?.value })
      .output
  }

  /// The forward pass with the given parameter values, keeping every layer's input and the hidden
  /// layers' pre-activations (what the VJP needs).
  private func forward(_ x: Tensor, weights: [Tensor], biases: [Tensor?]) throws -> (
    output: Tensor, inputs: [Tensor], preactivations: [Tensor]
  ) {
    var inputs: [Tensor] = []
    var preactivations: [Tensor] = []
    var h = x
    for (i, (w, b)) in zip(weights, biases).enumerated() {
      inputs.append(h)
      h = try h.linear(weight: w, bias: b)
      if i < layers.count - 1 {
        preactivations.append(h)
        h = try h.pointwise(activation.op)
      }
    }
    return (h, inputs, preactivations)
  }

  /// MLP(x), aᵀ·∂MLP/∂x and aᵀ·∂MLP/∂θ (θ in `trainableParameters()` order: each layer's weight
  /// then bias), without recording. Backward through layer i, with g the cotangent of its output:
  /// dWᵢ = gᵀ·hᵢ₋₁, dbᵢ = Σ_rows g, and g ← (g·Wᵢ) ⊙ σ′(zᵢ₋₁) for the layer below.
  public func vectorJacobian(at x: Tensor, cotangent a: Tensor) throws -> (
    value: Tensor, input: Tensor, parameters: [Tensor]
  ) {
    let x = x.detached
    let a = a.detached
    guard x.rank == 2, x.shape[1] == layers[0].weight.value.shape[1] else {
      throw TensorError.shapeMismatch(
        op: "MLP.vectorJacobian", lhs: x.shape, rhs: layers[0].weight.value.shape)
    }
    let weights = layers.map { $0.weight.value.detached }
    let biases = layers.map { $0.bias?.value.detached }
    let (h, inputs, preactivations) = try forward(x, weights: weights, biases: biases)
    guard a.shape == h.shape else {
      throw TensorError.shapeMismatch(
        op: "MLP.vectorJacobian cotangent", lhs: h.shape, rhs: a.shape)
    }
    try x.checkCompatible(a, "MLP.vectorJacobian")
    var g = a
    var grads: [Tensor] = []
    for i in stride(from: layers.count - 1, through: 0, by: -1) {
      let (below, dw, db) = try Tensor.linearBackward(
        g, input: inputs[i], weight: weights[i], bias: biases[i] != nil)
      if let db { grads.append(db) }
      grads.append(dw)
      g = i > 0 ? try preactivations[i - 1].pointwiseBackward(activation.op, below) : below
    }
    // Collected output layer first, bias before weight: reverse to weight, bias, layer by layer.
    return (h, g, grads.reversed())
  }
}
