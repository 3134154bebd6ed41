import DiffEqNet
import NumericTestSupport
import XCTest

/// The `BatchNorm` layer over the fused primitive (whose forward, running averages, evaluation
/// form and gradients OpCases checks against float64 references): training mode normalises with
/// the batch's statistics and moves the running averages, evaluation mode uses them, and the
/// averages are saved state that optimisers never see.
final class BatchNormLayerTests: XCTestCase {
  func testTrainingMovesRunningStatisticsAndEvaluationUsesThem() throws {
    for backend in testBackends() {
      for dtype in dtypes(on: backend) {
        let what = "\(backend.name) \(dtype)"
        let tolerance = dtype == .float32 ? 1e-5 : 1e-12
        var rng = RandomState(seed: 11)
        let shape = [6, 3, 5, 4]
        let host = rng.normal(shape, mean: 2, std: 3)
        let x = try host.tensor(dtype, on: backend)
        let layer = try BatchNorm(channels: 3, momentum: 0.25, dtype: dtype, on: backend)
        let y = try layer(x)
        let ones = HostTensor([3], [1, 1, 1])
        let zeros = HostTensor([3], [0, 0, 0])
        let ref = Ref.batchNorm(host, ones, zeros, eps: 1e-5)
        XCTAssertLessThan(relativeError(try y.toDoubles(), ref.y.data), tolerance, what)
        let running = Ref.batchNormRunning(
          [host, ones, zeros, zeros, ones], momentum: 0.25)
        XCTAssertLessThan(
          relativeError(try layer.runningMean.value.toDoubles(), running.mean.data), tolerance,
          "\(what) running mean")
        XCTAssertLessThan(
          relativeError(try layer.runningVariance.value.toDoubles(), running.variance.data),
          tolerance, "\(what) running variance")
        layer.train(false)
        let evaluated = try layer(x)
        let expected = Ref.batchNormInference(
          [host, ones, zeros, running.mean, running.variance], eps: 1e-5)
        XCTAssertLessThan(
          relativeError(try evaluated.toDoubles(), expected.data), tolerance, "\(what) eval")
        // Evaluation leaves the running statistics alone.
        XCTAssertLessThan(
          relativeError(try layer.runningMean.value.toDoubles(), running.mean.data), tolerance)
      }
    }
  }

  func testRunningStatisticsAreSavedButNotTrained() throws {
    let layer = try BatchNorm(channels: 4, on: sharedCPU)
    XCTAssertEqual(
      layer.namedParameters().map(\.name), ["gamma", "beta", "runningMean", "runningVariance"])
    XCTAssertEqual(layer.trainableParameters().map(\.name), ["gamma", "beta"])
    XCTAssertEqual(layer.parameterCount, 8)
  }

  func testBadSettingsAreRefused() {
    expectTensorError("no channels") { _ = try BatchNorm(channels: 0, on: sharedCPU) }
    expectTensorError("momentum") { _ = try BatchNorm(channels: 2, momentum: 2, on: sharedCPU) }
    expectTensorError("gamma shape") {
      let x = try Tensor.ones([2, 3, 2, 2], on: sharedCPU)
      let g = try Tensor.ones([2], on: sharedCPU)
      _ = try x.batchNorm(gamma: g, beta: g)
    }
  }
}
