import DiffEqNet
import NumericTestSupport
import XCTest

/// Every op's output against its float64 reference (ReferenceOps.swift), on every backend and
/// element type, with fresh random inputs per case and a NaN-poisoned pool so that an output
/// element an op fails to write cannot pass by holding a stale correct value.
/// Tolerance: ‖out − ref‖/‖ref‖ ≤ 1e-5 (float32), ≤ 1e-12 (float64).
final class ForwardTests: XCTestCase {
  func testBinaryBroadcasting() { checkForward(OpCases.binary) }
  func testScalarAffine() { checkForward(OpCases.affine) }
  func testLinearCombination() { checkForward(OpCases.linearCombination) }
  func testPointwise() { checkForward(OpCases.unary) }
  func testReductions() { checkForward(OpCases.reductions) }
  func testShapeOps() { checkForward(OpCases.shapes) }
  func testMatmul() { checkForward(OpCases.matmul) }
  func testLinear() { checkForward(OpCases.linear) }
  func testConv2d() { checkForward(OpCases.conv2d) }
  func testTimeConcatConv2d() { checkForward(OpCases.timeConcatConv2d) }
  func testGroupNorm() { checkForward(OpCases.groupNorm) }
  func testBatchNorm() { checkForward(OpCases.batchNorm) }
  func testPooling() { checkForward(OpCases.pooling) }
  func testLosses() { checkForward(OpCases.losses) }

  /// The adaptive solvers' error norm Σ (e / (atol + rtol·max(|y0|, |y1|)))², a host scalar.
  func testScaledErrorSquaredSum() throws {
    for backend in testBackends() {
      for dtype in dtypes(on: backend) {
        for (shape, atol, rtol) in [
          ([1], 1e-3, 1e-2), ([2, 3, 13, 16], 1e-6, 1e-3), ([31], 0.5, 0),
        ] {
          let what = "\(shape) atol \(atol) rtol \(rtol) on \(backend.name) \(dtype)"
          var rng = RandomState(seed: seed(what))
          let (e, y0, y1) = try (
            rng.normal(shape, std: 1e-3).tensor(dtype, on: backend),
            rng.normal(shape).tensor(dtype, on: backend),
            rng.normal(shape).tensor(dtype, on: backend)
          )
          let (he, h0, h1) = (try e.host, try y0.host, try y1.host)
          var expected = 0.0
          for i in 0..<he.count {
            let scale = atol + rtol * max(Swift.abs(h0.data[i]), Swift.abs(h1.data[i]))
            expected += (he.data[i] / scale) * (he.data[i] / scale)
          }
          let got = try Tensor.scaledErrorSquaredSum(
            error: e, y0: y0, y1: y1, atol: atol, rtol: rtol)
          let err = Swift.abs(got - expected) / expected
          XCTAssertLessThanOrEqual(err, forwardTolerance(dtype), "\(what): relative error \(err)")
        }
      }
    }
  }

  /// The catalog covers every case the forward checks need a reference for.
  func testEveryNonDropoutCaseHasAReference() {
    let missing = OpCases.all.filter { $0.reference == nil && !$0.name.hasPrefix("dropout") }
    XCTAssertEqual(missing.map(\.name), [])
  }
}

/// Runs each case on every backend and element type and compares with its reference.
func checkForward(_ cases: [OpCase], file: StaticString = #filePath, line: UInt = #line) {
  for backend in testBackends() {
    for dtype in dtypes(on: backend) {
      for c in cases {
        guard let reference = c.reference else { continue }
        let s = seed(c.name, salt: dtype == .float32 ? 1 : 2)
        let what = "\(c.name) on \(backend.name) \(dtype) (seed \(s))"
        do {
          var rng = RandomState(seed: s)
          let inputs = try c.inputs(&rng).map { try $0.tensor(dtype, on: backend) }
          // The reference reads the inputs as rounded to `dtype`: only the op's arithmetic differs.
          let hostInputs = try inputs.map { try $0.host }
          let expected = reference(hostInputs)
          try poisonPool(
            backend, dtype, counts: [expected.count] + hostInputs.map(\.count) + c.scratch)
          let out = try c.op(inputs)
          XCTAssertEqual(out.shape, expected.shape, "\(what): shape", file: file, line: line)
          XCTAssertEqual(out.dtype, dtype, "\(what): dtype", file: file, line: line)
          let err = relativeError(try out.toDoubles(), expected.data)
          let tol = forwardTolerance(dtype)
          XCTAssertLessThanOrEqual(
            err, tol, "\(what): ‖out − ref‖/‖ref‖ = \(err) exceeds \(tol)", file: file, line: line)
        } catch {
          XCTFail("\(what): threw \(error)", file: file, line: line)
        }
      }
    }
  }
}
