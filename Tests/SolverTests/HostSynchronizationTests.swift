import DiffEqNet
import NumericTestSupport
import XCTest

/// What a solve makes the host wait for, counted by the OpenCL backend (`Backend.traffic`): on a
/// GPU each synchronisation is a round trip that idles the device. A fixed-step solve reads once,
/// at its end; an adaptive solve reads once per step in each direction, plus its start (the
/// finiteness of y0 and Hairer's initial step: three reads) per solve. A NaN that appears
/// mid-solve is still reported at its time.
final class HostSynchronizationTests: XCTestCase {
  func openCL() throws -> OpenCLBackend {
    guard let first = OpenCLBackend.devices().first else {
      throw missing(.opencl, "no OpenCL device")
    }
    // GEMM as a kernel, as on a GPU: OpenBLAS on a CPU device's mapped buffers synchronises.
    return try OpenCLBackend(
      deviceIndex: first.index, options: OpenCLBackend.Options(blasOnCPUDevice: false))
  }

  /// ODE-Net's f (`ConvODEFunction`: three group norms, two with ReLU, and two time-channel
  /// convolutions) and its VJP, as the adjoint asks for it, within the launch budget a GPU
  /// needs: at most 8 launches for f and 20 for its VJP, whose input and parameter gradients are
  /// all that is asked. Neither waits for the device.
  func testODENetFieldStaysWithinItsLaunchBudget() throws {
    let b = try openCL()
    var rng = RandomState(seed: 3)
    let f = try ConvODEFunction(channels: 16, groups: 4, rng: &rng, on: b)
    let h = try Tensor.normal([2, 16, 6, 6], rng: &rng, on: b)
    let a = try Tensor.normal([2, 16, 6, 6], rng: &rng, on: b)
    _ = try f(0.5, h)  // builds the programs
    try b.synchronize()
    var before = b.traffic
    _ = try f(0.5, h)
    let forward = b.traffic - before
    XCTAssertLessThanOrEqual(forward.launches, 8, "f: \(forward)")
    XCTAssertEqual(forward.hostSynchronizations, 0, "f: \(forward)")
    _ = try vjp(f, at: [h], cotangents: [a]) { try [f(0.5, $0[0])] }
    try b.synchronize()
    before = b.traffic
    let (_, gx, gp) = try vjp(f, at: [h], cotangents: [a]) { try [f(0.5, $0[0])] }
    let backward = b.traffic - before
    XCTAssertLessThanOrEqual(backward.launches, 20, "VJP: \(backward)")
    XCTAssertEqual(backward.hostSynchronizations, 0, "VJP: \(backward)")
    XCTAssertEqual(gx.count, 1)
    XCTAssertEqual(gp.count, f.trainableParameters().count)
  }

  func testFixedStepSolvesReadOnceAtTheirEnd() throws {
    let b = try openCL()
    let model = try MLPField(dim: 3, hidden: 8, dtype: .float32, seed: 1, on: b)
    var rng = RandomState(seed: 2)
    let y0 = try Tensor.normal([4, 3], rng: &rng, on: b)
    for solver in [ODESolver.rk4, .euler, .nag(momentum: 0.5)] {
      for steps in [4, 16] {
        try b.synchronize()
        let before = b.traffic
        let solution = try odeint(
          model.field, y0, times: [0, 0.5, 1], options: .fixed(solver, steps: steps))
        let used = b.traffic - before
        XCTAssertEqual(
          used.hostSynchronizations, 1, "\(solver) with \(steps) steps: \(used)")
        XCTAssertTrue(try solution.states[2].toDoubles().allSatisfy(\.isFinite))
      }
    }
  }

  func testAdaptiveSolvesReadOncePerStepInEachDirection() throws {
    let b = try openCL()
    let model = try MLPField(dim: 3, hidden: 8, dtype: .float32, seed: 1, on: b)
    var rng = RandomState(seed: 2)
    let y0 = try Tensor.normal([4, 3], rng: &rng, on: b)
    for rtol in [1e-3, 1e-5] {
      var statistics = ODEStatistics()
      try b.synchronize()
      let before = b.traffic
      let (loss, _) = try valueAndGrad(model) {
        let solution = try odeint(
          model.field, y0, times: [0, 1],
          options: ODEOptions(solver: .dopri5, rtol: rtol, atol: rtol),
          gradient: .backsolve)
        statistics = solution.statistics
        return try solution.states[1].square().sum()
      }
      let used = b.traffic - before
      let steps =
        statistics.acceptedSteps + statistics.rejectedSteps + statistics.backwardAcceptedSteps
        + statistics.backwardRejectedSteps
      XCTAssertGreaterThanOrEqual(statistics.backwardAcceptedSteps, rtol < 1e-4 ? 2 : 1)
      // One read per step, and two for the forward solve's initial step, which also checks y0;
      // the backward solve starts with the forward's last step proposal and reads nothing more.
      XCTAssertEqual(
        used.hostSynchronizations, steps + 2, "rtol \(rtol), \(steps) steps: \(used)")
      XCTAssertTrue(try loss.item().isFinite)
    }
  }

  /// The cross-entropy's gradient is formed on the device (no one-hot from the host): a
  /// backward pass through it reads nothing.
  func testLossGradientReadsNothing() throws {
    let b = try openCL()
    var rng = RandomState(seed: 5)
    let logits = try Tensor.normal([8, 10], rng: &rng, on: b)
    let labels = try Tensor((0..<8).map { Double($0 % 10) }, shape: [8], on: b)
    let cotangent = try Tensor([2], shape: [], on: b)
    try b.synchronize()
    let before = b.traffic
    let (_, gradient) = try vjp(at: [logits], cotangent: cotangent) {
      try $0[0].softmaxCrossEntropy(labels: labels)
    }
    XCTAssertEqual((b.traffic - before).hostSynchronizations, 0)
    // (p − onehot)·2/8, checked against the host.
    let p = try logits.softmaxProbabilities().toDoubles()
    let expected = p.indices.map { i in (p[i] - (i % 10 == (i / 10) % 10 ? 1 : 0)) * 2 / 8 }
    XCTAssertLessThan(relativeError(try gradient[0].toDoubles(), expected), 1e-5)
  }

  /// A field that turns NaN after t = 0.5: a fixed-step solve, which now checks only at its end,
  /// still names the first output time whose state is not finite.
  func testNaNMidSolveIsReportedAtItsTime() throws {
    let b = try openCL()
    let y0 = try Tensor([1, 2, 3], shape: [3], on: b)
    let poisoned = try Tensor([Double.nan], shape: [1], on: b)
    let f = field { t, y in t > 0.5 ? try y * poisoned : try -y }
    XCTAssertThrowsError(
      try odeint(f, y0, times: [0.25, 0.75, 1], options: .fixed(.rk4, steps: 8))
    ) {
      guard case ODEError.nonFinite(let t, let what) = $0 else { return XCTFail("\($0)") }
      XCTAssertEqual(t, 0.75)
      XCTAssertEqual(what, "the state")
    }
    let nan = try Tensor([1, .nan, 3], shape: [3], on: b)
    XCTAssertThrowsError(try odeint(f, nan, times: [0, 1], options: .fixed(.rk4, steps: 8))) {
      guard case ODEError.nonFinite(let t, let what) = $0 else { return XCTFail("\($0)") }
      XCTAssertEqual(t, 0)
      XCTAssertEqual(what, "initial state")
    }
    // Adaptive solves check y0 through their first norm read: the initial step's, or with a
    // given first step, the first step's error (then y0 alone is read to name it).
    for firstStep in [nil, 0.1] as [Double?] {
      var options = ODEOptions(solver: .dopri5)
      options.firstStep = firstStep
      XCTAssertThrowsError(try odeint(f, nan, times: [0, 1], options: options)) {
        guard case ODEError.nonFinite(let t, let what) = $0 else { return XCTFail("\($0)") }
        XCTAssertEqual(t, 0)
        XCTAssertEqual(what, "initial state", "first step \(String(describing: firstStep))")
      }
    }
  }
}
