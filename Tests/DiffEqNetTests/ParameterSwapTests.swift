import DiffEqNet
import XCTest

/// `withParameters(of:setTo:_:)`, the one place parameters are swapped, and the order of `vjp`'s
/// parameter gradients.
final class ParameterSwapTests: XCTestCase {
  struct Boom: Error {}

  /// The values are in place inside the body, and the originals (tracked leaves included) are
  /// back afterwards, whether the body returns or throws.
  func testSwapsAndRestoresEvenWhenTheBodyThrows() throws {
    var rng = RandomState(seed: 3)
    let mlp = try MLP([2, 4, 1], rng: &rng, on: sharedCPU)
    let original = mlp.trainableParameters().map { $0.parameter.value }
    let tracked = original.map { $0.trackingGradients() }
    let zeros = try original.map { try $0.zerosLike() }
    try withParameters(of: mlp, setTo: tracked) {
      try withParameters(of: mlp, setTo: zeros) {
        for (p, z) in zip(mlp.trainableParameters(), zeros) {
          XCTAssertEqual(try p.parameter.value.toDoubles(), try z.toDoubles())
        }
      }
      XCTAssertTrue(mlp.trainableParameters().allSatisfy { $0.parameter.value.isTracked })
      XCTAssertThrowsError(try withParameters(of: mlp, setTo: zeros) { throw Boom() })
      XCTAssertTrue(
        mlp.trainableParameters().allSatisfy { $0.parameter.value.isTracked },
        "a throwing body must hand back the enclosing computation's tracked parameters")
    }
    for (p, v) in zip(mlp.trainableParameters(), original) {
      XCTAssertFalse(p.parameter.value.isTracked)
      XCTAssertEqual(try p.parameter.value.toDoubles(), try v.toDoubles())
    }
  }

  /// `vjp` returns parameter gradients in `trainableParameters()` order: each has its
  /// parameter's shape, and each equals the gradient `valueAndGrad` files under that name.
  func testVJPParameterGradientsAreInTrainableOrder() throws {
    var rng = RandomState(seed: 5)
    let mlp = try MLP([3, 6, 5, 2], rng: &rng, on: sharedCPU)
    let x = try Tensor.normal([4, 3], rng: &rng, on: sharedCPU)
    let (_, _, ordered) = try vjp(mlp, at: [x], cotangent: nil) { try mlp($0[0]).sum() }
    let (_, named) = try valueAndGrad(mlp) { try mlp(x).sum() }
    let parameters = mlp.trainableParameters()
    XCTAssertEqual(ordered.count, parameters.count)
    for (p, g) in zip(parameters, ordered) {
      XCTAssertEqual(g.shape, p.parameter.value.shape, p.name)
      XCTAssertEqual(try g.toDoubles(), try named[p.name]!.toDoubles(), p.name)
    }
  }
}
