import DiffEqCore
import DiffEqODE
import Kernels

/// FFJORD's field network: ConcatSquash layers hᵢ = (hᵢ₋₁·Wᵢᵀ + bᵢ) ⊙ σ(t·gᵢ + cᵢ) + t·eᵢ with the
/// activation between them, widths [d, hidden…, d]. At a fixed t it is an MLP with weights
/// diag(sᵢ)·Wᵢ and biases sᵢ ⊙ bᵢ + t·eᵢ (sᵢ the gate), which is how it is evaluated: `mlp`'s
/// tape-free trace VJP for those weights, chained into (Wᵢ, bᵢ, gᵢ, cᵢ, eᵢ).
public final class ConcatSquashMLP: Module {
  /// Wᵢ and bᵢ.
  public let mlp: MLP
  /// The gates' t ↦ t·gᵢ + cᵢ (1 → widthᵢ).
  public let gates: [Linear]
  /// The time biases t ↦ t·eᵢ (1 → widthᵢ, no bias).
  public let timeBiases: [Linear]

  public init(
    _ widths: [Int], activation: Activation = .tanh, dtype: DType = .float32,
    rng: inout RandomState, on backend: any Backend
  ) throws {
    guard [.tanh, .softplus].contains(activation) else {
      throw TensorError.invalidArgument(
        op: "ConcatSquashMLP", reason: "the trace's gradient needs tanh or softplus")
    }
    mlp = try MLP(widths, activation: activation, dtype: dtype, rng: &rng, on: backend)
    gates = try widths.dropFirst().map { try Linear(1, $0, dtype: dtype, rng: &rng, on: backend) }
    timeBiases = try widths.dropFirst().map {
      try Linear(1, $0, bias: false, dtype: dtype, rng: &rng, on: backend)
    }
    super.init()
  }

  /// The gate sᵢ [widthᵢ] and the effective weights and biases at t, from the parameters' current
  /// values (recorded when they are tracked).
  func effectiveLayers(at t: Double, detached: Bool = false) throws -> (
    gates: [Tensor], weights: [Tensor], biases: [Tensor]
  ) {
    func value(_ p: Parameter) -> Tensor { detached ? p.value.detached : p.value }
    var s: [Tensor] = []
    var w: [Tensor] = []
    var b: [Tensor] = []
    for (i, layer) in mlp.layers.enumerated() {
      let width = layer.weight.value.shape[0]
      let gate = try (value(gates[i].weight).reshaped([width]) * t + value(gates[i].bias!))
        .sigmoid()
      s.append(gate)
      w.append(try value(layer.weight) * gate.reshaped([width, 1]))
      b.append(
        try value(layer.bias!) * gate + value(timeBiases[i].weight).reshaped([width]) * t)
    }
    return (s, w, b)
  }

  /// (f(t, z) [batch, d], trace [batch, 1]) as `MLP.trace(at:probes:)`, recorded.
  public func trace(at t: Double, _ z: Tensor, probes: Tensor?) throws -> (
    value: Tensor, trace: Tensor
  ) {
    let (_, w, b) = try effectiveLayers(at: t)
    return try MLP.trace(at: z, weights: w, biases: b, activation: mlp.activation, probes: probes)
  }

  /// The trace VJP of `trace(at:_:probes:)` with respect to z and the parameters
  /// (`trainableParameters()` order), recording nothing.
  public func traceVectorJacobian(
    at t: Double, _ z: Tensor, probes: Tensor?, cotangent a: Tensor, traceCotangent c: Tensor
  ) throws -> (value: Tensor, trace: Tensor, input: Tensor, parameters: [Tensor]) {
    let (s, w, b) = try effectiveLayers(at: t, detached: true)
    let r = try MLP.traceVectorJacobian(
      at: z, weights: w, biases: b, activation: mlp.activation, probes: probes, cotangent: a,
      traceCotangent: c)
    var grads: [ObjectIdentifier: Tensor] = [:]
    for (i, layer) in mlp.layers.enumerated() {
      let width = s[i].shape[0]
      let (dWe, dBe) = (r.weights[i], r.biases[i]!)
      let weight = layer.weight.value.detached
      let bias = layer.bias!.value.detached
      let gate = try s[i].reshaped([width, 1])
      grads[ObjectIdentifier(layer.weight)] = try dWe * gate
      grads[ObjectIdentifier(layer.bias!)] = try dBe * s[i]
      // ∂/∂s of diag(s)·W and s ⊙ b, through the sigmoid to the gate's pre-activation.
      let dGate = try (dWe * weight).sum(axes: [1]) + dBe * bias
      let dPre = try dGate * s[i] * (1 - s[i])
      grads[ObjectIdentifier(gates[i].weight)] = try (dPre * t).reshaped([width, 1])
      grads[ObjectIdentifier(gates[i].bias!)] = dPre
      grads[ObjectIdentifier(timeBiases[i].weight)] = try (dBe * t).reshaped([width, 1])
    }
    let ordered = trainableParameters().map { grads[ObjectIdentifier($0.parameter)]! }
    return (r.value, r.trace, r.input, ordered)
  }

  /// The network as a CNF's field, its adjoint through the tape-free trace VJP.
  public var divergenceField: DivergenceField {
    DivergenceField(
      parameters: self,
      evaluate: { [unowned self] t, z, probes in try self.trace(at: t, z, probes: probes) },
      vectorJacobian: { [unowned self] t, z, probes, a, c in
        try self.traceVectorJacobian(at: t, z, probes: probes, cotangent: a, traceCotangent: c)
      })
  }
}
