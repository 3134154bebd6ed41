import DiffEqNet
import NumericTestSupport
import XCTest

/// `GRUCell` over a short sequence (three steps, so the recurrence's gradient through h is
/// exercised), on every backend: its forward against a float64 host loop of the defining
/// equations, and the tape's gradients with respect to the inputs, the initial state and every
/// parameter against float64 central finite differences (h = 1e-6) of Σ h_T ⊙ r for a random r.
final class GRUCellTests: XCTestCase {
  let (batch, inputSize, hiddenSize, steps) = (3, 4, 5, 3)

  /// h_T from h0 over xs, by the cell.
  func run(_ cell: GRUCell, _ xs: [Tensor], _ h0: Tensor) throws -> Tensor {
    var h = h0
    for x in xs { h = try cell(x, h) }
    return h
  }

  /// h_T by the equations, in float64 on the host, from the cell's parameter values.
  func reference(_ cell: GRUCell, _ xs: [[Double]], _ h0: [Double]) throws -> [Double] {
    let (B, I, H) = (batch, inputSize, hiddenSize)
    let wi = try cell.weightIH.value.toDoubles()
    let wh = try cell.weightHH.value.toDoubles()
    let bi = try cell.biasIH.value.toDoubles()
    let bh = try cell.biasHH.value.toDoubles()
    func sigmoid(_ v: Double) -> Double { 1 / (1 + Foundation.exp(-v)) }
    var h = h0
    for x in xs {
      var next = [Double](repeating: 0, count: B * H)
      for b in 0..<B {
        for j in 0..<H {
          func gate(_ g: Int) -> (Double, Double) {
            let row = g * H + j
            var a = bi[row]
            var c = bh[row]
            for k in 0..<I { a += wi[row * I + k] * x[b * I + k] }
            for k in 0..<H { c += wh[row * H + k] * h[b * H + k] }
            return (a, c)
          }
          let (ar, cr) = gate(0)
          let (az, cz) = gate(1)
          let (an, cn) = gate(2)
          let r = sigmoid(ar + cr)
          let z = sigmoid(az + cz)
          let n = Foundation.tanh(an + r * cn)
          next[b * H + j] = (1 - z) * n + z * h[b * H + j]
        }
      }
      h = next
    }
    return h
  }

  /// Forward: float64 to 1e-12, float32 to 1e-5 (relative), on every backend and element type.
  func testForwardMatchesFloat64Reference() throws {
    for backend in testBackends() {
      for dtype in dtypes(on: backend) {
        var rng = RandomState(seed: 5)
        let cell = try GRUCell(
          inputSize: inputSize, hiddenSize: hiddenSize, dtype: dtype, rng: &rng, on: backend)
        let xs = (0..<steps).map { _ in rng.normal([batch, inputSize]).data }
        let h0 = rng.normal([batch, hiddenSize]).data
        let out = try run(
          cell, xs.map { try Tensor($0, shape: [batch, inputSize], dtype: dtype, on: backend) },
          try Tensor(h0, shape: [batch, hiddenSize], dtype: dtype, on: backend))
        let e = relativeError(try out.toDoubles(), try reference(cell, xs, h0))
        XCTAssertLessThanOrEqual(e, forwardTolerance(dtype), "\(dtype) on \(backend.name)")
      }
    }
  }

  /// Gradients of Σ h_T ⊙ r: ‖tape − fd‖/‖fd‖ ≤ 1e-6 for every x_t, h0 and parameter, in float64
  /// on every backend that computes in float64.
  func testGradientsMatchFiniteDifferences() throws {
    for backend in testBackends() where backend.supports(.float64) {
      var rng = RandomState(seed: 9)
      let cell = try GRUCell(
        inputSize: inputSize, hiddenSize: hiddenSize, dtype: .float64, rng: &rng, on: backend)
      var inputs = (0..<steps).map { _ in rng.normal([batch, inputSize]) }
      inputs.append(rng.normal([batch, hiddenSize]))
      let r = rng.normal([batch, hiddenSize])
      let rTensor = try r.tensor(.float64, on: backend)
      func forward(_ ts: [Tensor]) throws -> Tensor {
        try run(cell, Array(ts.dropLast()), ts[ts.count - 1])
      }
      let (_, gInputs, gParameters) = try vjp(
        cell, at: try inputs.map { try $0.tensor(.float64, on: backend) }, cotangent: rTensor,
        forward)
      func objective() throws -> Double {
        let h = try forward(try inputs.map { try $0.tensor(.float64, on: backend) })
        return zip(try h.toDoubles(), r.data).reduce(0) { $0 + $1.0 * $1.1 }
      }
      let step = 1e-6
      for i in inputs.indices {
        var fd = [Double](repeating: 0, count: inputs[i].count)
        for j in fd.indices {
          let x0 = inputs[i].data[j]
          inputs[i].data[j] = x0 + step
          let plus = try objective()
          inputs[i].data[j] = x0 - step
          let minus = try objective()
          inputs[i].data[j] = x0
          fd[j] = (plus - minus) / (2 * step)
        }
        let e = relativeError(try gInputs[i].toDoubles(), fd)
        XCTAssertLessThanOrEqual(e, 1e-6, "input \(i) on \(backend.name)")
      }
      for (k, (name, p)) in cell.trainableParameters().enumerated() {
        let original = p.value
        var values = try original.toDoubles()
        var fd = [Double](repeating: 0, count: values.count)
        for j in values.indices {
          let v0 = values[j]
          values[j] = v0 + step
          p.value = try Tensor(values, shape: original.shape, dtype: .float64, on: backend)
          let plus = try objective()
          values[j] = v0 - step
          p.value = try Tensor(values, shape: original.shape, dtype: .float64, on: backend)
          let minus = try objective()
          values[j] = v0
          fd[j] = (plus - minus) / (2 * step)
        }
        p.value = original
        let e = relativeError(try gParameters[k].toDoubles(), fd)
        XCTAssertLessThanOrEqual(e, 1e-6, "\(name) on \(backend.name)")
      }
    }
  }

  func testBadShapesAreClearErrors() throws {
    var rng = RandomState(seed: 1)
    let cell = try GRUCell(inputSize: 3, hiddenSize: 2, rng: &rng, on: sharedCPU)
    XCTAssertThrowsError(
      try cell(try Tensor.zeros([4, 2], on: sharedCPU), try Tensor.zeros([4, 2], on: sharedCPU))
    ) { XCTAssertTrue("\($0)".contains("GRUCell"), "\($0)") }
    XCTAssertThrowsError(try GRUCell(inputSize: 0, hiddenSize: 2, rng: &rng, on: sharedCPU))
  }
}
