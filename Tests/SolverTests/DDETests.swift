import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// y'(t) = −y(t − 1) with y = 1 on [−1, 0]: y(t) = Σ_{k ≥ 0, k − 1 ≤ t} (−1)^k (t − k + 1)^k / k!
/// (1 − t on [0, 1], 1 − t + (t − 1)²/2 on [1, 2], …).
func unitDelaySolution(_ t: Double) -> Double {
  var sum = 0.0
  var k = 0
  var factorial = 1.0
  while Double(k) - 1 <= t {
    if k > 0 { factorial *= Double(k) }
    sum += (k % 2 == 0 ? 1 : -1) * pow(t - Double(k) + 1, Double(k)) / factorial
    k += 1
  }
  return sum
}

/// The method of steps against analytic solutions, `odeint`, and its refusals.
final class DDETests: XCTestCase {
  let cpu = CPUBackend()
  let negativeDelayed = DelayVectorField { _, _, delayed in try -delayed[0] }

  func unitDelayError(_ options: ODEOptions, until tEnd: Double) throws -> Double {
    let y0 = try Tensor([1], shape: [1], dtype: .float64, on: cpu)
    let times = Array(stride(from: 0.0, through: tEnd, by: 0.5))
    let sol = try ddeint(negativeDelayed, y0, delays: [1], times: times, options: options)
    return try zip(times, sol.states).map { t, y in
      Swift.abs(try y.item() - unitDelaySolution(t))
    }.max()!
  }

  /// Fixed-step RK4 converges at fourth order (the discontinuities at t = 1, 2, 3 are grid
  /// points, and the Hermite dense output is accurate to O(h⁴)).
  func testRK4ConvergesAtFourthOrderOnUnitDelay() throws {
    var errors: [Double] = []
    for n in [4, 8, 16] {
      var options = ODEOptions(solver: .rk4)
      options.stepSize = 1 / Double(n)
      errors.append(try unitDelayError(options, until: 10))
    }
    for (coarse, fine) in zip(errors, errors.dropFirst()) {
      let order = log2(coarse / fine)
      XCTAssertGreaterThan(order, 3.7, "errors \(errors)")
      XCTAssertLessThan(order, 4.5, "errors \(errors)")
    }
    XCTAssertLessThan(errors.last!, 1e-6, "errors \(errors)")
  }

  func testDopri5MeetsItsToleranceOnUnitDelay() throws {
    let loose = try unitDelayError(ODEOptions(solver: .dopri5, rtol: 1e-5, atol: 1e-5), until: 10)
    let tight = try unitDelayError(ODEOptions(solver: .dopri5, rtol: 1e-9, atol: 1e-9), until: 10)
    XCTAssertLessThan(loose, 1e-4)
    XCTAssertLessThan(tight, 1e-7)
    XCTAssertLessThan(tight, loose / 10)
  }

  /// No delays: exactly `odeint`; a tiny delay: close to the ODE y' = −y.
  func testDelayFreeAndSmallDelayReproduceOdeint() throws {
    var rng = RandomState(seed: 1)
    let y0 = try Tensor.normal([3, 2], dtype: .float64, rng: &rng, on: cpu)
    let times = [0, 0.4, 1.0]
    for options in [ODEOptions.fixed(.rk4, steps: 10), ODEOptions(solver: .dopri5)] {
      let dde = try ddeint(
        DelayVectorField { t, y, _ in try -y * t }, y0, delays: [], times: times,
        options: options)
      let ode = try odeint(VectorField { t, y in try -y * t }, y0, times: times, options: options)
      XCTAssertEqual(try dde.trajectory.toDoubles(), try ode.trajectory.toDoubles())
    }
    var options = ODEOptions(solver: .rk4)
    options.stepSize = 1e-3
    let delayed = try ddeint(negativeDelayed, y0, delays: [1e-3], times: [0, 1], options: options)
    let ode = try odeint(
      VectorField { _, y in try -y }, y0, times: [0, 1], options: .fixed(.rk4, steps: 100))
    let e = relativeError(try delayed.states[1].toDoubles(), try ode.states[1].toDoubles())
    XCTAssertLessThan(e, 2e-3, "τ = 1e-3 against the ODE")
    XCTAssertGreaterThan(e, 1e-5, "a delay must change the solution")
  }

  /// A history function is read before t0 (here the exact solution's own past shifted by one).
  func testHistoryFunctionIsRead() throws {
    // y' = −y(t − 1) with y = 1 on [−1, 0] is, from t0 = 1, the solution continued from its
    // values on [0, 1] (1 − t): the history function gives those.
    let y1 = try Tensor([0], shape: [1], dtype: .float64, on: cpu)
    let history = DDEHistory.function { [cpu] t in
      try Tensor([unitDelaySolution(t)], shape: [1], dtype: .float64, on: cpu)
    }
    var options = ODEOptions(solver: .rk4)
    options.stepSize = 1.0 / 32
    let sol = try ddeint(
      negativeDelayed, y1, history: history, delays: [1], times: [1, 2, 3], options: options)
    XCTAssertEqual(try sol.states[1].item(), unitDelaySolution(2), accuracy: 1e-7)
    XCTAssertEqual(try sol.states[2].item(), unitDelaySolution(3), accuracy: 1e-7)
  }

  func testBadInputsAreClearErrors() throws {
    let y0 = try Tensor([1, 2], shape: [2], dtype: .float64, on: cpu)
    func expectInvalidOptions(
      _ what: String, _ body: () throws -> ODESolution, mentioning phrase: String
    ) {
      XCTAssertThrowsError(try body(), what) {
        guard case ODEError.invalidOptions(let message) = $0 else {
          return XCTFail("\(what): \($0)")
        }
        XCTAssertTrue(message.contains(phrase), "\(what): \(message)")
      }
    }
    for tau in [0, -1, Double.nan, .infinity] {
      expectInvalidOptions(
        "delay \(tau)",
        { try ddeint(negativeDelayed, y0, delays: [tau], times: [0, 1]) }, mentioning: "delay")
    }
    let wrong = DDEHistory.function { [cpu] _ in try Tensor.zeros([3], dtype: .float64, on: cpu) }
    expectInvalidOptions(
      "history shape",
      { try ddeint(negativeDelayed, y0, history: wrong, delays: [0.5], times: [0, 1]) },
      mentioning: "shape")
    var big = ODEOptions(solver: .rk4)
    big.stepSize = 0.6
    expectInvalidOptions(
      "step > delay",
      { try ddeint(negativeDelayed, y0, delays: [0.5], times: [0, 1], options: big) },
      mentioning: "exceeds the smallest delay")
    expectInvalidOptions(
      "steps > delay",
      {
        try ddeint(
          negativeDelayed, y0, delays: [0.5], times: [0, 2], options: .fixed(.rk4, steps: 2))
      }, mentioning: "exceeds the smallest delay")
    expectInvalidOptions(
      "NAG",
      {
        try ddeint(
          negativeDelayed, y0, delays: [0.5], times: [0, 1],
          options: .fixed(.nag(momentum: 0.5), steps: 4))
      }, mentioning: "Runge–Kutta")
    XCTAssertThrowsError(try ddeint(negativeDelayed, y0, delays: [0.5], times: [0, 1, 1])) {
      guard case ODEError.invalidTimes = $0 else { return XCTFail("\($0)") }
    }
  }
}

/// The Mackey–Glass generator: converged in its step (10 against 100 substeps per unit), and in
/// the chaotic regime's known range (about 0.4 to 1.3 after the transient).
final class MackeyGlassTests: XCTestCase {
  func testSeriesConvergesAndStaysInRange() {
    let coarse = MackeyGlass().series(count: 200, transient: 300)
    let fine = MackeyGlass().series(count: 200, transient: 300, substeps: 100)
    let e = zip(coarse, fine).map { Swift.abs($0 - $1) }.max()!
    XCTAssertLessThan(e, 1e-3, "10 vs 100 substeps per unit")
    XCTAssertGreaterThan(coarse.min()!, 0.3)
    XCTAssertLessThan(coarse.max()!, 1.4)
    XCTAssertGreaterThan(coarse.max()! - coarse.min()!, 0.6, "a chaotic series spans its range")
  }
}
