import DiffEqNet
import NumericTestSupport
import XCTest

/// A field with no parameters, from a host function of (t, y) written with tensor ops.
func field(_ f: @escaping (Double, Tensor) throws -> Tensor) -> VectorField { VectorField(f) }

/// A two-layer tanh MLP vector field dy/dt = W2·tanh(W1·y + b1 + t·c) + b2 (non-autonomous).
final class MLPField: Module {
  let l1: Linear
  let l2: Linear
  let timeWeights: Parameter

  init(dim: Int, hidden: Int, dtype: DType, seed: UInt64, on backend: any Backend) throws {
    var rng = RandomState(seed: seed)
    l1 = try Linear(dim, hidden, dtype: dtype, rng: &rng, on: backend)
    l2 = try Linear(hidden, dim, dtype: dtype, rng: &rng, on: backend)
    timeWeights = Parameter(try .normal([hidden], std: 0.5, dtype: dtype, rng: &rng, on: backend))
    super.init()
  }

  var field: VectorField {
    VectorField(parameters: self) { [unowned self] t, y in
      try l2((l1(y) + timeWeights.value * t).tanh())
    }
  }
}

/// dh/dt = tanh(conv([h, t]) ) with the time appended as a constant channel, as ODE-Net does.
final class ConvField: Module {
  let conv: Conv2d
  init(channels: Int, dtype: DType, seed: UInt64, on backend: any Backend) throws {
    var rng = RandomState(seed: seed)
    conv = try Conv2d(
      channels + 1, channels, kernelSize: 3, padding: 1, dtype: dtype, rng: &rng, on: backend)
    super.init()
  }

  var field: VectorField {
    VectorField(parameters: self) { [unowned self] t, h in
      var s = h.shape
      s[1] = 1
      let time = try Tensor.full(s, t, dtype: h.dtype, on: h.backend)
      return try conv(Tensor.concat([h, time], axis: 1)).tanh()
    }
  }
}

/// Every trainable parameter's gradient and y0's, flattened in a fixed order.
func flatGradients(_ model: Module, _ gx: Tensor, _ gp: [Tensor]) throws -> [Double] {
  precondition(gp.count == model.trainableParameters().count)
  var out = try gx.toDoubles()
  for g in gp { out += try g.toDoubles() }
  return out
}

/// Central differences (step `eps`) of `loss` with respect to every trainable parameter entry of
/// `model`, in `trainableParameters()` order; each parameter is restored after its entries.
func parameterCentralDifferences(
  _ model: Module, eps: Double, on backend: any Backend, _ loss: () throws -> Double
) throws -> [Double] {
  var out: [Double] = []
  for (_, p) in model.trainableParameters() {
    var values = try p.value.toDoubles()
    let shape = p.value.shape
    for i in values.indices {
      let v = values[i]
      values[i] = v + eps
      p.value = try Tensor(values, shape: shape, dtype: .float64, on: backend)
      let plus = try loss()
      values[i] = v - eps
      p.value = try Tensor(values, shape: shape, dtype: .float64, on: backend)
      let minus = try loss()
      values[i] = v
      p.value = try Tensor(values, shape: shape, dtype: .float64, on: backend)
      out.append((plus - minus) / (2 * eps))
    }
  }
  return out
}
