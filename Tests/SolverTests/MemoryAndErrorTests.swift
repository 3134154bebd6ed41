import DiffEqNet
import XCTest

final class MemoryAndErrorTests: XCTestCase {
  let cpu = CPUBackend()

  /// Peak pool bytes of loss + gradient for an RK4 solve with `steps` steps.
  func peakBytes(_ method: GradientMethod, steps: Int) throws -> Int {
    let model = try ConvField(channels: 8, dtype: .float32, seed: 1, on: cpu)
    var rng = RandomState(seed: 2)
    let y0 = try Tensor.normal([4, 8, 12, 12], rng: &rng, on: cpu)
    cpu.pool.resetPeak()
    let before = cpu.pool.currentBytes
    _ = try vjp(model, at: [y0], cotangent: nil) { xs in
      try odeint(
        model.field, xs[0], times: [0, 1], options: .fixed(.rk4, steps: steps), gradient: method
      )
      .states[1].square().sum()
    }
    return cpu.pool.peakBytes - before
  }

  func testBacksolveMemoryDoesNotGrowWithSteps() throws {
    let adjoint10 = try peakBytes(.backsolve, steps: 10)
    let adjoint160 = try peakBytes(.backsolve, steps: 160)
    let change = Double(abs(adjoint160 - adjoint10)) / Double(adjoint10)
    XCTAssertLessThan(
      change, 0.05, "backsolve peak bytes 10 steps \(adjoint10), 160 steps \(adjoint160)")
    let direct10 = try peakBytes(.direct, steps: 10)
    let direct40 = try peakBytes(.direct, steps: 40)
    XCTAssertGreaterThan(
      Double(direct40), 2.5 * Double(direct10), "direct: \(direct10) → \(direct40)")
    XCTAssertLessThan(adjoint160, direct40, "adjoint at 160 steps must use less than direct at 40")
  }

  func testBadInputsAreClearErrors() throws {
    let y0 = try Tensor([1, 2], shape: [2], dtype: .float64, on: cpu)
    let f = field { _, y in try -y }
    XCTAssertThrowsError(try odeint(f, y0, times: [0, 1, 1])) {
      guard case ODEError.invalidTimes = $0 else { return XCTFail("\($0)") }
    }
    XCTAssertThrowsError(try odeint(f, y0, times: [1, 0])) {
      guard case ODEError.invalidTimes = $0 else { return XCTFail("\($0)") }
    }
    XCTAssertThrowsError(
      try odeint(f, y0, times: [0, 1], options: ODEOptions(rtol: -1, atol: 1e-6))
    ) {
      guard case ODEError.invalidOptions = $0 else { return XCTFail("\($0)") }
    }
    XCTAssertThrowsError(
      try odeint(f, y0, times: [0, 1], options: .fixed(.nag(momentum: 1), steps: 4))
    ) {
      guard case ODEError.invalidOptions = $0 else { return XCTFail("\($0)") }
    }
    let nan = try Tensor([1, .nan], shape: [2], dtype: .float64, on: cpu)
    XCTAssertThrowsError(try odeint(f, nan, times: [0, 1])) {
      guard case ODEError.nonFinite(let t, _) = $0 else { return XCTFail("\($0)") }
      XCTAssertEqual(t, 0)
    }
  }

  func testBlowUpAndStepLimitsAreReportedWithTime() throws {
    // y' = y², y(0) = 1 has y = 1/(1 − t): it blows up at t = 1.
    let y0 = try Tensor([1], shape: [1], dtype: .float64, on: cpu)
    let f = field { _, y in try y.square() }
    XCTAssertThrowsError(
      try odeint(
        f, y0, times: [0, 2], options: ODEOptions(solver: .dopri5, rtol: 1e-6, atol: 1e-6))
    ) {
      switch $0 {
      case ODEError.stepSizeUnderflow(let t, _), ODEError.nonFinite(let t, _),
        ODEError.maxStepsReached(_, let t):
        XCTAssertEqual(t, 1, accuracy: 0.05, "the failure must be located at the blow-up: \($0)")
      default: XCTFail("unexpected \($0)")
      }
    }
    var options = ODEOptions(solver: .dopri5, rtol: 1e-10, atol: 1e-10)
    options.maxSteps = 5
    let g = field { _, y in try -y }
    XCTAssertThrowsError(try odeint(g, y0, times: [0, 10], options: options)) {
      guard case ODEError.maxStepsReached(5, let t) = $0 else { return XCTFail("\($0)") }
      XCTAssertGreaterThan(t, 0)
      XCTAssertTrue("\($0)".contains("maximum of 5 steps reached at t = "))
    }
    // Fixed-step Euler on the blow-up overflows to infinity: reported, never looped on.
    XCTAssertThrowsError(try odeint(f, y0, times: [0, 3], options: .fixed(.euler, steps: 300))) {
      guard case ODEError.nonFinite = $0 else { return XCTFail("\($0)") }
    }
  }
}
