import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// The delay differential image classifiers (ddnn-a, ddnn-b): they train, their adjoint matches
/// direct backpropagation, and their settings are validated.
final class DDNNTrainingTests: XCTestCase {
  func configuration(_ model: ModelArchitecture) -> TrainingConfiguration {
    var c = TrainingConfiguration()
    c.model = model
    c.data = TrainingTests.root.appendingPathComponent("data/mnist-5k").path
    c.width = 16
    c.limit = 256
    c.batchSize = 32
    c.warmupSteps = 10
    c.cropPadding = 0
    c.solver = .rk4
    c.rkSteps = 4
    c.epochs = 8
    return c
  }

  /// Eight epochs on 256 images with the segment adjoint: the loss falls, and the metrics report
  /// forward and backward evaluations of f.
  func testDelayModelsTrain() throws {
    for model in [ModelArchitecture.ddnnA, .ddnnB] {
      let c = configuration(model)
      let (train, test) = try c.loadData()
      let trainer = try Trainer(c, backend: CPUBackend(), train: train, test: test)
      var history: [EpochMetrics] = []
      while !trainer.isFinished { history.append(try XCTUnwrap(try trainer.trainEpoch { _ in })) }
      XCTAssertLessThan(
        history.last!.trainLoss, 0.8 * history.first!.trainLoss,
        "\(model): \(history.map(\.trainLoss))")
      XCTAssertGreaterThan(history.last!.nfeForward, 0, "\(model)")
      XCTAssertGreaterThan(history.last!.nfeBackward, 0, "\(model)")
    }
  }

  /// Both architectures' blocks: the adjoint's gradients equal direct backpropagation's, for a
  /// delay that is (0.5) and one that is not (0.3) a multiple of the step 0.25, and float64
  /// central differences along a random direction, on every backend with float64.
  func testBlockAdjointEqualsDirect() throws {
    var backends: [any Backend] = [CPUBackend()]
    if let first = OpenCLBackend.devices().first,
      let b = try? OpenCLBackend(deviceIndex: first.index), b.supports(.float64)
    {
      backends.append(b)
    }
    for backend in backends {
      for combination in [DDEBlock.Combination.concatenation, .separatePaths] {
        for delay in [0.5, 0.3] {
          var rng = RandomState(seed: 7)
          var options = ODEOptions(solver: .rk4)
          options.stepSize = 0.25
          let block = try DDEBlock(
            channels: 4, groups: 2, combination: combination, delay: delay, options: options,
            gradient: .direct, dtype: .float64, rng: &rng, on: backend)
          let x = try Tensor.normal([2, 4, 5, 5], dtype: .float64, rng: &rng, on: backend)
          let r = try Tensor.normal([2, 4, 5, 5], dtype: .float64, rng: &rng, on: backend)
          func gradients(_ method: GradientMethod) throws -> [Double] {
            block.gradient = method
            let (_, gx, gp) = try vjp(block, at: [x], cotangent: nil) { xs in
              try (block(xs[0]) * r).sum()
            }
            return try gp.reduce(try gx[0].toDoubles()) { $0 + (try $1.toDoubles()) }
          }
          let direct = try gradients(.direct)
          let adjoint = try gradients(.backsolve)
          let e = relativeError(adjoint, direct)
          XCTAssertLessThan(e, 1e-10, "\(backend.name) \(combination) τ \(delay): \(e)")
          XCTAssertGreaterThan(block.lastStatistics.backwardEvaluations, 0)

          // Central differences along a random direction v of (x, θ): (L(+εv) − L(−εv)) / 2ε
          // against the adjoint's gradient · v.
          let params = block.trainableParameters().map(\.parameter)
          let saved = params.map(\.value)
          let vx = try Tensor.normal(x.shape, dtype: .float64, rng: &rng, on: backend)
          let vp = try saved.map {
            try Tensor.normal($0.shape, dtype: .float64, rng: &rng, on: backend)
          }
          let v = try vp.reduce(try vx.toDoubles()) { $0 + (try $1.toDoubles()) }
          let predicted = zip(adjoint, v).reduce(0) { $0 + $1.0 * $1.1 }
          // ReLU kinks make L rough at ε ≥ 1e-5 (the differences wander by 1e-3 relative); at
          // 1e-7 float64 rounding is still far below the tolerance.
          let eps = 1e-7
          func loss(_ sign: Double) throws -> Double {
            for (p, (value, d)) in zip(params, zip(saved, vp)) {
              p.value = try value + d * (sign * eps)
            }
            defer { for (p, value) in zip(params, saved) { p.value = value } }
            return try (block(try x + vx * (sign * eps)) * r).sum().item()
          }
          let numeric = (try loss(1) - loss(-1)) / (2 * eps)
          XCTAssertEqual(
            predicted, numeric, accuracy: 1e-6 * max(1, Swift.abs(numeric)),
            "\(backend.name) \(combination) τ \(delay): directional derivative")
        }
      }
    }
  }

  /// Both architectures read the delayed features: the same parameters with τ = 0.25 and 0.5
  /// give different outputs (a block that ignored h(t − τ) would give the same).
  func testBlockOutputDependsOnTheDelay() throws {
    let cpu = CPUBackend()
    for combination in [DDEBlock.Combination.concatenation, .separatePaths] {
      var outputs: [[Double]] = []
      for delay in [0.25, 0.5] {
        var rng = RandomState(seed: 9)
        let block = try DDEBlock(
          channels: 4, groups: 2, combination: combination, delay: delay,
          options: .fixed(.rk4, steps: 8), gradient: .direct, dtype: .float64, rng: &rng,
          on: cpu)
        let x = try Tensor.normal([2, 4, 5, 5], dtype: .float64, rng: &rng, on: cpu)
        outputs.append(try block(x).toDoubles())
      }
      XCTAssertGreaterThan(relativeError(outputs[0], outputs[1]), 1e-3, "\(combination)")
    }
  }

  func testDelaySettingsAreValidated() throws {
    for tau in [0, 1, -0.5, Double.nan] {
      var c = configuration(.ddnnA)
      c.delay = tau
      XCTAssertThrowsError(try c.validate(), "delay \(tau)") {
        XCTAssertTrue("\($0)".contains("delay"), "\($0)")
      }
    }
    var c = configuration(.ddnnB)
    c.delay = 0.2
    c.rkSteps = 4
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("rk-steps"), "\($0)") }
    c.rkSteps = 5
    XCTAssertNoThrow(try c.validate())
    var rng = RandomState(seed: 0)
    XCTAssertThrowsError(
      try DDEBlock(
        channels: 4, combination: .concatenation, delay: 1, options: ODEOptions(),
        gradient: .direct, rng: &rng, on: CPUBackend()))
  }
}
