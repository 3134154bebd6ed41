import DiffEqNet
import NumericTestSupport
import XCTest

/// `MLP`'s tape-free vector-Jacobian product against differentiating its recorded forward pass.
final class MLPTests: XCTestCase {
  /// For every activation and backend type: value, input VJP and parameter VJPs equal the tape's
  /// (float64 to 1e-12; float32 to 1e-5, relative), on fresh random inputs and cotangents.
  func testVectorJacobianMatchesTape() throws {
    for backend in testBackends() {
      for dtype in dtypes(on: backend) {
        for activation in Activation.allCases {
          var rng = RandomState(seed: 11)
          let mlp = try MLP(
            [3, 17, 5, 4], activation: activation, dtype: dtype, rng: &rng, on: backend)
          let x = try Tensor.normal([7, 3], dtype: dtype, rng: &rng, on: backend)
          let a = try Tensor.normal([7, 4], dtype: dtype, rng: &rng, on: backend)
          let (value, gx, gp) = try vjp(mlp, at: [x], cotangent: a) { try mlp($0[0]) }
          let fused = try mlp.vectorJacobian(at: x, cotangent: a)
          let tol = forwardTolerance(dtype)
          let label = "\(activation) \(dtype) on \(backend.name)"
          let eValue = relativeError(try fused.value.toDoubles(), try value.toDoubles())
          XCTAssertLessThanOrEqual(eValue, tol, "value, \(label)")
          let eInput = relativeError(try fused.input.toDoubles(), try gx[0].toDoubles())
          XCTAssertLessThanOrEqual(eInput, tol, "input VJP, \(label)")
          let names = mlp.trainableParameters().map(\.name)
          XCTAssertEqual(fused.parameters.count, names.count, label)
          XCTAssertEqual(gp.count, names.count, label)
          for (name, (g, reference)) in zip(names, zip(fused.parameters, gp)) {
            let e = relativeError(try g.toDoubles(), try reference.toDoubles())
            XCTAssertLessThanOrEqual(e, tol, "\(name) VJP, \(label)")
          }
        }
      }
    }
  }

  func testBadShapesAreClearErrors() throws {
    var rng = RandomState(seed: 1)
    let mlp = try MLP([3, 8, 2], rng: &rng, on: sharedCPU)
    let x = try Tensor.normal([4, 3], rng: &rng, on: sharedCPU)
    XCTAssertThrowsError(
      try mlp.vectorJacobian(at: x, cotangent: try Tensor.zeros([4, 3], on: sharedCPU))
    ) { XCTAssertTrue("\($0)".contains("MLP.vectorJacobian"), "\($0)") }
    XCTAssertThrowsError(
      try mlp.vectorJacobian(
        at: try Tensor.zeros([4, 5], on: sharedCPU),
        cotangent: try Tensor.zeros([4, 2], on: sharedCPU)))
    XCTAssertThrowsError(try MLP([3], rng: &rng, on: sharedCPU))
    XCTAssertThrowsError(try MLP([3, 0, 2], rng: &rng, on: sharedCPU))
  }
}
