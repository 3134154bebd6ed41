import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// Fixed-step solvers converge at their order; adaptive ones meet their tolerance on problems
/// with known solutions.
final class ConvergenceTests: XCTestCase {
  let cpu = CPUBackend()

  /// The error at t = 1 of the logistic equation y' = y(1 − y), y(t) = 1/(1 + (1/y0 − 1)e^{−t}),
  /// solved in Float64 with `steps` steps.
  func logisticError(_ solver: ODESolver, steps: Int) throws -> Double {
    let y0 = [0.1, 0.5, 0.9]
    let x = try Tensor(y0, shape: [3], dtype: .float64, on: cpu)
    let f = field { _, y in try y * (1.0 - y) }
    let sol = try odeint(f, x, times: [0, 1], options: .fixed(solver, steps: steps))
    let got = try sol.states[1].toDoubles()
    let exact = y0.map { 1 / (1 + (1 / $0 - 1) * exp(-1.0)) }
    return zip(got, exact).map { abs($0 - $1) }.max()!
  }

  /// The error at t = 1 of y' = λy with λ = −1.3 + complex-free decay, y(t) = y0·e^{λt}.
  func linearError(_ solver: ODESolver, steps: Int) throws -> Double {
    let x = try Tensor([1, -2], shape: [2], dtype: .float64, on: cpu)
    let f = field { _, y in try y * -1.3 }
    let sol = try odeint(f, x, times: [0, 1], options: .fixed(solver, steps: steps))
    let got = try sol.states[1].toDoubles()
    return zip(got, [1.0, -2.0].map { $0 * exp(-1.3) }).map { abs($0 - $1) }.max()!
  }

  func testFixedStepSolversConvergeAtTheirOrder() throws {
    let cases: [(ODESolver, Double, Int)] = [
      (.euler, 1, 32), (.midpoint, 2, 32), (.heun, 2, 32), (.rk4, 4, 16), (.rk38, 4, 16),
      (.nag(momentum: 0.5), 1, 64),
      (.nag(momentum: 0.9), 1, 256),
    ]
    for (solver, order, n) in cases {
      for problem in [logisticError, linearError] {
        let e1 = try problem(solver, n)
        let e2 = try problem(solver, 2 * n)
        let e4 = try problem(solver, 4 * n)
        let observed = log2(e2 / e4)
        XCTAssertEqual(
          observed, order, accuracy: 0.25,
          "\(solver): observed order \(observed) (errors \(e1), \(e2), \(e4)), expected \(order) ± 0.25"
        )
        XCTAssertLessThan(e4, e2, "\(solver) error must fall as the step halves")
      }
    }
  }

  func testNAGWithZeroMomentumIsEuler() throws {
    let x = try Tensor([0.3, -0.7], shape: [2], dtype: .float64, on: cpu)
    let f = field { t, y in try (y * t).tanh() + 0.1 }
    let a = try odeint(f, x, times: [0, 0.5, 1.5], options: .fixed(.nag(momentum: 0), steps: 30))
    let b = try odeint(f, x, times: [0, 0.5, 1.5], options: .fixed(.euler, steps: 30))
    for (p, q) in zip(a.states, b.states) {
      XCTAssertEqual(
        try p.toDoubles(), try q.toDoubles(), "NAG(μ = 0) must reproduce Euler exactly")
    }
  }

  /// x'' = −x as [x, v]' = [v, −x]: x = cos t, v = −sin t, at 40 output times on [0, 10], most of
  /// them inside steps (dense output).
  func testAdaptiveSolversMeetToleranceOnHarmonicOscillator() throws {
    let rotation = try Tensor([0, -1, 1, 0], shape: [2, 2], dtype: .float64, on: cpu)
    let f = field { _, y in try y.matmul(rotation) }  // [x, v]·[[0, −1], [1, 0]] = [v, −x]
    let y0 = try Tensor([1, 0], shape: [1, 2], dtype: .float64, on: cpu)
    let times = (0...40).map { Double($0) * 0.25 }
    for solver in [ODESolver.bosh3, .dopri5, .tsit5] {
      for tol in [1e-5, 1e-8] {
        let sol = try odeint(
          f, y0, times: times, options: ODEOptions(solver: solver, rtol: tol, atol: tol))
        var worst = 0.0
        for (t, y) in zip(times, sol.states) {
          let v = try y.toDoubles()
          worst = max(worst, abs(v[0] - cos(t)), abs(v[1] + sin(t)))
        }
        // Local error control keeps the global error within a modest multiple of the tolerance.
        XCTAssertLessThan(worst, 50 * tol, "\(solver) at tol \(tol): max error \(worst)")
        let steps = sol.statistics.acceptedSteps
        let budget = solver == .bosh3 ? (tol < 1e-6 ? 3000 : 300) : (tol < 1e-6 ? 400 : 80)
        XCTAssertLessThan(steps, budget, "\(solver) at tol \(tol) took \(steps) steps")
        XCTAssertGreaterThan(steps, 3, "\(solver) must step, not jump")
      }
    }
  }

  /// Lotka–Volterra against a reference computed by RK4 with 20,000 steps.
  func testAdaptiveSolversOnLotkaVolterra() throws {
    let f = field { _, y in
      let x = try y.slice(axis: 1, 0..<1)
      let p = try y.slice(axis: 1, 1..<2)
      let xp = try x * p
      return try Tensor.concat([x * 1.5 - xp, xp - p * 3.0], axis: 1)
    }
    let y0 = try Tensor([1, 1], shape: [1, 2], dtype: .float64, on: cpu)
    let times = [0.0, 2.5, 5, 7.5, 10]
    let reference = try odeint(f, y0, times: times, options: .fixed(.rk4, steps: 20_000))
    for solver in [ODESolver.bosh3, .dopri5, .tsit5] {
      let tol = 1e-7
      let sol = try odeint(
        f, y0, times: times, options: ODEOptions(solver: solver, rtol: tol, atol: tol))
      for (a, b) in zip(sol.states, reference.states) {
        let e = relativeError(try a.toDoubles(), try b.toDoubles())
        XCTAssertLessThan(e, 1e-4, "\(solver): relative error \(e) against the RK4 reference")
      }
    }
  }
}
