import DiffEqNet
import NumericTestSupport
import XCTest

/// Every differentiable op's vector-Jacobian product against central finite differences, in
/// float64 on the CPU backend: for loss = Σ f(x)·r with a random fixed cotangent r (so every
/// output element matters), ∂loss/∂x_j ≈ (loss(x + h·e_j) − loss(x − h·e_j)) / 2h, h = 1e-6, for
/// every element of every differentiable input (operands, weights, biases, gamma and beta).
/// Tolerance: ‖vjp − fd‖/‖fd‖ ≤ 1e-6. Inputs stay away from kinks (see OpCases).
final class GradientTests: XCTestCase {
  func testBinaryBroadcasting() { checkGradients(OpCases.binary) }
  func testScalarAffine() { checkGradients(OpCases.affine) }
  func testLinearCombination() { checkGradients(OpCases.linearCombination) }
  func testPointwise() { checkGradients(OpCases.unary) }
  func testReductions() { checkGradients(OpCases.reductions) }
  func testShapeOps() { checkGradients(OpCases.shapes) }
  func testMatmul() { checkGradients(OpCases.matmul) }
  func testLinear() { checkGradients(OpCases.linear) }
  func testConv2d() { checkGradients(OpCases.conv2d) }
  func testTimeConcatConv2d() { checkGradients(OpCases.timeConcatConv2d) }
  func testGroupNorm() { checkGradients(OpCases.groupNorm) }
  func testBatchNorm() { checkGradients(OpCases.batchNorm) }
  func testPooling() { checkGradients(OpCases.pooling) }
  func testLosses() { checkGradients(OpCases.losses) }
  func testDropout() { checkGradients(OpCases.dropout) }

  /// Finite differences cannot see ties; `maximum` documents that the gradient then goes to its
  /// first operand, and elsewhere to the larger one (broadcast b sums its share).
  func testMaximumSendsTheGradientToTheFirstOperandOnTies() throws {
    for backend in testBackends() {
      let a = try Tensor([1, 2, 3, -1, 5, 0], shape: [2, 3], on: backend)
      let b = try Tensor([1, 2, 0], shape: [3], on: backend)
      let r = try Tensor([1, 10, 100, 1000, 10_000, 100_000], shape: [2, 3], on: backend)
      let (_, g) = try vjp(at: [a, b], cotangent: r) { try $0[0].maximum($0[1]) }
      // Rows: (1 vs 1 tie → a, 2 vs 2 tie → a, 3 > 0 → a), (−1 < 1 → b, 5 > 2 → a, 0 vs 0 → a).
      XCTAssertEqual(try g[0].toDoubles(), [1, 10, 100, 0, 10_000, 100_000], backend.name)
      XCTAssertEqual(try g[1].toDoubles(), [1000, 0, 0], backend.name)
    }
  }
}

let finiteDifferenceStep = 1e-6
let gradientTolerance = 1e-6

/// Σ f(inputs)·r evaluated without tracking, accumulated on the host in float64.
private func loss(_ c: OpCase, _ inputs: [HostTensor], _ r: HostTensor, on backend: any Backend)
  throws -> Double
{
  let y = try c.op(try inputs.map { try $0.tensor(.float64, on: backend) }).toDoubles()
  return zip(y, r.data).reduce(0) { $0 + $1.0 * $1.1 }
}

func checkGradients(_ cases: [OpCase], file: StaticString = #filePath, line: UInt = #line) {
  let backend = sharedCPU
  for c in cases {
    let s = seed(c.name, salt: 3)
    let what = "\(c.name) (seed \(s))"
    do {
      var rng = RandomState(seed: s)
      let host = c.inputs(&rng)
      let differentiable = c.differentiableInputs(host.count)
      if differentiable.isEmpty { continue }
      let xs = try host.map { try $0.tensor(.float64, on: backend) }
      let shape = try c.op(xs).shape
      let r = rng.normal(shape)
      let (_, grads) = try vjp(at: xs, cotangent: try r.tensor(.float64, on: backend)) {
        try c.op($0)
      }
      XCTAssertEqual(
        grads.count, host.count, "\(what): one gradient per input", file: file, line: line)
      for (i, x) in host.enumerated() {
        XCTAssertEqual(
          grads[i].shape, x.shape, "\(what): gradient \(i) shape", file: file, line: line)
        let g = try grads[i].toDoubles()
        guard differentiable.contains(i) else {
          // Inputs such as labels take no part in the derivative: their cotangent is exactly 0.
          XCTAssertTrue(
            g.allSatisfy { $0 == 0 }, "\(what): input \(i) is not differentiable", file: file,
            line: line)
          continue
        }
        var fd = [Double](repeating: 0, count: x.count)
        var perturbed = host
        for j in 0..<x.count {
          let x0 = x.data[j]
          let (xp, xm) = (x0 + finiteDifferenceStep, x0 - finiteDifferenceStep)
          perturbed[i].data[j] = xp
          let lp = try loss(c, perturbed, r, on: backend)
          perturbed[i].data[j] = xm
          let lm = try loss(c, perturbed, r, on: backend)
          perturbed[i].data[j] = x0
          fd[j] = (lp - lm) / (xp - xm)
        }
        let err = relativeError(g, fd)
        XCTAssertLessThanOrEqual(
          err, gradientTolerance,
          "\(what): input \(i) ‖vjp − fd‖/‖fd‖ = \(err) exceeds \(gradientTolerance)",
          file: file, line: line)
      }
    } catch {
      XCTFail("\(what): threw \(error)", file: file, line: line)
    }
  }
}
