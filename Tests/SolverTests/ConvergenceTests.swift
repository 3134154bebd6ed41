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

  /// NAG on y' = λy against the two-step sequence computed by hand from its definition
  /// (`NAGStepper`): an Euler start, then z = y_n + μ(y_n − y_{n−1}),
  /// y_{n+1} = z + (1 − μ)h·λz. A solver that ignored μ (Euler) differs at the second step.
  func testNAGFollowsItsTwoStepRecurrence() throws {
    let lambda = -0.7
    for mu in [0.5, 0.9] {
      let h = 0.25
      var expected = [1.0]
      var previous = 1.0
      var y = 1.0 + h * lambda * 1.0  // the Euler start
      expected.append(y)
      for _ in 2...4 {
        let z = y + mu * (y - previous)
        previous = y
        y = z + (1 - mu) * h * lambda * z
        expected.append(y)
      }
      let x = try Tensor([1], shape: [1], dtype: .float64, on: cpu)
      let f = field { _, y in try y * lambda }
      let sol = try odeint(
        f, x, times: [0, 0.25, 0.5, 0.75, 1.0], options: .fixed(.nag(momentum: mu), steps: 4))
      let got = try sol.states.map { try $0.toDoubles()[0] }
      for (g, e) in zip(got, expected) {
        XCTAssertEqual(
          g, e, accuracy: 1e-15 * max(1, abs(e)), "NAG μ = \(mu): \(got) vs \(expected)")
      }
      let euler = try odeint(f, x, times: [0, 1], options: .fixed(.euler, steps: 4))
      XCTAssertGreaterThan(abs(try euler.states[1].toDoubles()[0] - expected[4]), 1e-3)
    }
  }

  /// Output intervals of unequal length (so unequal steps): NAG carries y_{n−1} across each
  /// output time as it does within an interval (the hand-computed sequence), and still converges
  /// at first order as the step halves.
  func testNAGAcrossUnequalOutputIntervals() throws {
    let lambda = -1.1
    let mu = 0.6
    let times = [0, 0.25, 1.0]
    func expected(stepSize: Double) -> [Double] {
      var out = [1.0]
      var t = 0.0
      var y = 1.0
      var previous: Double? = nil
      for target in times.dropFirst() {
        let n = Int(((target - t) / stepSize - 1e-9).rounded(.up))
        let h = (target - t) / Double(n)
        for _ in 0..<n {
          let next: Double
          if let p = previous {
            let z = y + mu * (y - p)
            next = z + (1 - mu) * h * lambda * z
          } else {
            next = y + h * lambda * y
          }
          previous = y
          y = next
        }
        t = target
        out.append(y)
      }
      return out
    }
    let x = try Tensor([1], shape: [1], dtype: .float64, on: cpu)
    let f = field { _, y in try y * lambda }
    var errors: [Double] = []
    for stepSize in [0.1, 0.05, 0.025] {
      var options = ODEOptions(solver: .nag(momentum: mu))
      options.stepSize = stepSize
      let got = try odeint(f, x, times: times, options: options).states.map {
        try $0.toDoubles()[0]
      }
      let want = expected(stepSize: stepSize)
      for (g, e) in zip(got, want) { XCTAssertEqual(g, e, accuracy: 1e-14, "h = \(stepSize)") }
      errors.append(abs(got[2] - exp(lambda * 1.0)))
    }
    let order = log2(errors[1] / errors[2])
    XCTAssertEqual(order, 1, accuracy: 0.3, "observed order \(order), errors \(errors)")
  }

  /// Dopri5's dense output between step points, at (nearly) fixed steps: its error falls at least
  /// at fourth order as h halves, where linear interpolation between steps would fall at second.
  func testDopri5DenseOutputConvergesAtItsOrder() throws {
    let x = try Tensor([1, 0.5], shape: [2], dtype: .float64, on: cpu)
    let f = field { t, y in try y * -0.8 + Foundation.sin(3 * t) }
    // Reference: the same problem at a far smaller step, at the same output times.
    let outputs = stride(from: 0.0, through: 2.0, by: 0.137).map { $0 }
    let reference = try odeint(
      f, x, times: outputs, options: ODEOptions(solver: .dopri5, rtol: 1e-13, atol: 1e-13))
    func error(step h: Double) throws -> Double {
      // Tolerances that accept every step and a growth factor of almost 1: fixed steps of h.
      var options = ODEOptions(solver: .dopri5, rtol: 1e3, atol: 1e3)
      options.firstStep = h
      options.maxFactor = 1 + 1e-12
      options.safety = 1
      let sol = try odeint(f, x, times: outputs, options: options)
      var worst = 0.0
      for (a, b) in zip(sol.states, reference.states) {
        worst = max(worst, zip(try a.toDoubles(), try b.toDoubles()).map { abs($0 - $1) }.max()!)
      }
      return worst
    }
    let e1 = try error(step: 0.2)
    let e2 = try error(step: 0.1)
    let order = log2(e1 / e2)
    XCTAssertGreaterThan(order, 3.7, "dense output: errors \(e1), \(e2), observed order \(order)")
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
