import DiffEqNet
import NumericTestSupport
import XCTest

/// Adjoint and checkpointed gradients against direct backpropagation and finite differences.
final class AdjointTests: XCTestCase {
  let cpu = CPUBackend()

  /// loss = Σ_i Σ y(t_i)·r_i, whose gradient involves every output time.
  func lossAndGradients(
    _ model: Module, _ field: VectorField, _ y0: Tensor, times: [Double], options: ODEOptions,
    method: GradientMethod, adjoint: AdjointOptions = AdjointOptions(), weights: [Tensor]
  ) throws -> (Double, [Double], ODEStatistics) {
    var stats: ODEStatistics?
    let (loss, gx, gp) = try vjp(model, at: [y0], cotangent: nil) { xs in
      let sol = try odeint(
        field, xs[0], times: times, options: options, gradient: method, adjoint: adjoint)
      stats = sol.statistics
      var total = try (sol.states[0] * weights[0]).sum()
      for i in 1..<times.count { total = try total + (sol.states[i] * weights[i]).sum() }
      return total
    }
    return (try loss.item(), try flatGradients(model, gx[0], gp), stats!)
  }

  func weights(_ shape: [Int], _ n: Int) throws -> [Tensor] {
    var rng = RandomState(seed: 99)
    return try (0..<n).map { _ in try Tensor.normal(shape, dtype: .float64, rng: &rng, on: cpu) }
  }

  func testMLPGradientsAgreeAcrossMethods() throws {
    let model = try MLPField(dim: 3, hidden: 8, dtype: .float64, seed: 1, on: cpu)
    var rng = RandomState(seed: 2)
    let y0 = try Tensor.normal([4, 3], dtype: .float64, rng: &rng, on: cpu)
    let times = [0, 0.4, 0.7, 1.2]
    let w = try weights([4, 3], times.count)
    for options in [
      ODEOptions.fixed(.rk4, steps: 24), ODEOptions(solver: .dopri5, rtol: 1e-10, atol: 1e-10),
    ] {
      let (_, direct, _) = try lossAndGradients(
        model, model.field, y0, times: times, options: options, method: .direct, weights: w)
      let (_, checkpointed, _) = try lossAndGradients(
        model, model.field, y0, times: times, options: options, method: .checkpointed,
        weights: w)
      let (_, backsolve, stats) = try lossAndGradients(
        model, model.field, y0, times: times, options: options, method: .backsolve,
        weights: w)
      let eCheck = relativeError(checkpointed, direct)
      let eBack = relativeError(backsolve, direct)
      XCTAssertLessThan(
        eCheck, 1e-12,
        "\(options.solver): checkpointed vs direct \(eCheck) (must agree to rounding)")
      XCTAssertLessThan(eBack, 1e-5, "\(options.solver): backsolve vs direct \(eBack)")
      XCTAssertGreaterThan(stats.backwardEvaluations, 0)
    }
  }

  /// A field with a hand-derived VJP (`MLP.vectorField`) gets the same backsolve gradients as
  /// the tape gives the same function, and both agree with direct backpropagation.
  func testHandDerivedVJPAgreesWithTape() throws {
    var rng = RandomState(seed: 5)
    let mlp = try MLP([3, 16, 3], activation: .softplus, dtype: .float64, rng: &rng, on: cpu)
    let y0 = try Tensor.normal([5, 3], dtype: .float64, rng: &rng, on: cpu)
    let times = [0, 0.3, 1.0]
    let w = try weights([5, 3], times.count)
    let options = ODEOptions(solver: .dopri5, rtol: 1e-10, atol: 1e-10)
    let onTape = VectorField(parameters: mlp) { _, y in try mlp(y) }
    let (_, fused, _) = try lossAndGradients(
      mlp, mlp.vectorField, y0, times: times, options: options, method: .backsolve,
      weights: w)
    let (_, tape, _) = try lossAndGradients(
      mlp, onTape, y0, times: times, options: options, method: .backsolve, weights: w)
    let (_, direct, _) = try lossAndGradients(
      mlp, onTape, y0, times: times, options: options, method: .direct, weights: w)
    XCTAssertLessThan(relativeError(fused, tape), 1e-12, "hand-derived VJP vs tape")
    XCTAssertLessThan(relativeError(fused, direct), 1e-6, "hand-derived VJP vs direct")
  }

  /// A hand-derived VJP that returns the wrong number of parameter gradients is an error.
  func testMalformedHandDerivedVJPIsAnError() throws {
    var rng = RandomState(seed: 6)
    let mlp = try MLP([2, 4, 2], dtype: .float64, rng: &rng, on: cpu)
    let bad = VectorField(
      parameters: mlp, { _, y in try mlp(y) },
      vectorJacobian: { _, y, a in
        let r = try mlp.vectorJacobian(at: y, cotangent: a)
        return (r.value, r.input, Array(r.parameters.dropLast()))
      })
    let y0 = try Tensor.normal([3, 2], dtype: .float64, rng: &rng, on: cpu)
    XCTAssertThrowsError(
      try lossAndGradients(
        mlp, bad, y0, times: [0, 1], options: .fixed(.rk4, steps: 2),
        method: .backsolve, weights: try weights([3, 2], 2))
    ) { XCTAssertTrue("\($0)".contains("parameter gradients"), "\($0)") }
  }

  /// Gradients with respect to the output times and t0 (a non-autonomous field, so ∂f/∂t
  /// matters) against central differences of re-solved losses, for both adjoint methods.
  func testTimeGradientsMatchFiniteDifferences() throws {
    let model = try MLPField(dim: 2, hidden: 6, dtype: .float64, seed: 7, on: cpu)
    var rng = RandomState(seed: 8)
    let y0 = try Tensor.normal([3, 2], dtype: .float64, rng: &rng, on: cpu)
    let hostTimes = [0.1, 0.6, 0.9, 1.5]
    let w = try weights([3, 2], hostTimes.count)
    let options = ODEOptions(solver: .dopri5, rtol: 1e-11, atol: 1e-11)
    func loss(_ t: [Double]) throws -> Double {
      let sol = try odeint(model.field, y0, times: t, options: options)
      return try zip(sol.states, w).reduce(0) { $0 + (try ($1.0 * $1.1).sum().item()) }
    }
    let eps = 1e-6
    let numeric = try hostTimes.indices.map { i in
      var plus = hostTimes
      var minus = hostTimes
      plus[i] += eps
      minus[i] -= eps
      return (try loss(plus) - loss(minus)) / (2 * eps)
    }
    for method in [GradientMethod.backsolve, .checkpointed] {
      let times = try Tensor(hostTimes, shape: [hostTimes.count], dtype: .float64, on: cpu)
      let (_, grads) = try valueAndGrad(at: [y0, times]) { xs in
        let sol = try odeint(model.field, xs[0], times: xs[1], options: options, gradient: method)
        var total = try (sol.states[0] * w[0]).sum()
        for i in 1..<hostTimes.count { total = try total + (sol.states[i] * w[i]).sum() }
        return total
      }
      let analytic = try grads[1].toDoubles()
      let e = relativeError(analytic, numeric)
      XCTAssertLessThan(
        e, 1e-5, "\(method): time gradients \(analytic) vs central differences \(numeric)")
    }
  }

  /// `trajectory` is `states` stacked, and a loss on it has the same gradients, for every method.
  func testTrajectoryIsTheStackedStates() throws {
    let model = try MLPField(dim: 2, hidden: 4, dtype: .float64, seed: 10, on: cpu)
    var rng = RandomState(seed: 11)
    let y0 = try Tensor.normal([3, 2], dtype: .float64, rng: &rng, on: cpu)
    let times = [0, 0.5, 1.25]
    let w = try weights([3, 2], times.count)
    let stackedWeights = try Tensor.concat(w.map { try $0.reshaped([1, 3, 2]) }, axis: 0)
    let options = ODEOptions.fixed(.rk4, steps: 6)
    for method in GradientMethod.allCases {
      let (_, viaStates, _) = try lossAndGradients(
        model, model.field, y0, times: times, options: options, method: method, weights: w)
      var trajectory: [Double] = []
      var states: [Double] = []
      let (_, gx, gp) = try vjp(model, at: [y0], cotangent: nil) { xs in
        let sol = try odeint(model.field, xs[0], times: times, options: options, gradient: method)
        XCTAssertEqual(sol.trajectory.shape, [3, 3, 2])
        trajectory = try sol.trajectory.toDoubles()
        states = try sol.states.flatMap { try $0.toDoubles() }
        return try (sol.trajectory * stackedWeights).sum()
      }
      XCTAssertEqual(trajectory, states, "\(method)")
      let viaTrajectory = try flatGradients(model, gx[0], gp)
      XCTAssertLessThan(relativeError(viaTrajectory, viaStates), 1e-12, "\(method)")
    }
  }

  func testTimeGradientsNeedAnAdjointMethod() throws {
    let model = try MLPField(dim: 2, hidden: 3, dtype: .float64, seed: 9, on: cpu)
    let y0 = try Tensor.zeros([1, 2], dtype: .float64, on: cpu)
    let times = try Tensor([0, 1], shape: [2], dtype: .float64, on: cpu).trackingGradients()
    XCTAssertThrowsError(try odeint(model.field, y0, times: times, gradient: .direct)) {
      XCTAssertTrue("\($0)".contains("gradients with respect to times"), "\($0)")
    }
    let matrix = try Tensor([0, 1], shape: [1, 2], dtype: .float64, on: cpu)
    XCTAssertThrowsError(try odeint(model.field, y0, times: matrix)) {
      XCTAssertTrue("\($0)".contains("1-D"), "\($0)")
    }
  }

  /// The backsolve adjoint of every adaptive solver against central differences.
  func testGradientsMatchFiniteDifferences() throws {
    // Bosh3 is third order: 1e-9 keeps its step count (and the 76 solves) reasonable.
    for (solver, tol, bound) in [
      (ODESolver.dopri5, 1e-11, 1e-6), (.tsit5, 1e-11, 1e-6), (.bosh3, 1e-9, 1e-5),
    ] {
      try checkGradientsAgainstFiniteDifferences(
        ODEOptions(solver: solver, rtol: tol, atol: tol), bound: bound)
    }
  }

  func checkGradientsAgainstFiniteDifferences(_ options: ODEOptions, bound: Double) throws {
    let model = try MLPField(dim: 2, hidden: 5, dtype: .float64, seed: 3, on: cpu)
    var rng = RandomState(seed: 4)
    let y0 = try Tensor.normal([3, 2], dtype: .float64, rng: &rng, on: cpu)
    let times = [0, 0.5, 1.0]
    let w = try weights([3, 2], times.count)
    let (_, analytic, _) = try lossAndGradients(
      model, model.field, y0, times: times, options: options, method: .backsolve, weights: w)
    // Perturb y0 entries and every parameter entry; central differences.
    let eps = 1e-6
    func loss() throws -> Double {
      let sol = try odeint(model.field, y0Current, times: times, options: options)
      var total = 0.0
      for (s, r) in zip(sol.states, w) { total += try (s * r).sum().item() }
      return total
    }
    var y0Current = y0
    var numeric: [Double] = []
    var y0Values = try y0.toDoubles()
    for i in y0Values.indices {
      let v = y0Values[i]
      y0Values[i] = v + eps
      y0Current = try Tensor(y0Values, shape: y0.shape, dtype: .float64, on: cpu)
      let plus = try loss()
      y0Values[i] = v - eps
      y0Current = try Tensor(y0Values, shape: y0.shape, dtype: .float64, on: cpu)
      let minus = try loss()
      y0Values[i] = v
      numeric.append((plus - minus) / (2 * eps))
    }
    y0Current = y0
    numeric += try parameterCentralDifferences(model, eps: eps, on: cpu, loss)
    let e = relativeError(analytic, numeric)
    XCTAssertLessThan(
      e, bound,
      "\(options.solver) backsolve adjoint vs central differences: relative error \(e) (≤ \(bound))"
    )
  }

  /// The seminorm (the backward error norm leaves the parameter adjoint out) gives the same
  /// gradients within the tolerance, in no more backward steps than the full norm.
  func testSeminormKeepsGradientsAndSavesSteps() throws {
    let model = try MLPField(dim: 3, hidden: 8, dtype: .float64, seed: 12, on: cpu)
    var rng = RandomState(seed: 13)
    let y0 = try Tensor.normal([4, 3], dtype: .float64, rng: &rng, on: cpu)
    let times = [0, 0.5, 2.0]
    let w = try weights([4, 3], times.count)
    let options = ODEOptions(solver: .dopri5, rtol: 1e-7, atol: 1e-7)
    let (_, semi, semiStats) = try lossAndGradients(
      model, model.field, y0, times: times, options: options, method: .backsolve,
      adjoint: AdjointOptions(seminorm: true), weights: w)
    let (_, full, fullStats) = try lossAndGradients(
      model, model.field, y0, times: times, options: options, method: .backsolve,
      adjoint: AdjointOptions(seminorm: false), weights: w)
    XCTAssertLessThan(relativeError(semi, full), 1e-5, "seminorm vs full norm gradients")
    XCTAssertLessThanOrEqual(
      semiStats.backwardAcceptedSteps + semiStats.backwardRejectedSteps,
      fullStats.backwardAcceptedSteps + fullStats.backwardRejectedSteps,
      "seminorm vs full norm backward steps (accepted + rejected)")
    XCTAssertNotEqual(
      semiStats.backwardEvaluations, fullStats.backwardEvaluations,
      "the seminorm must change the backward solve at all")
  }

  func testConvFieldWithTimeChannel() throws {
    let model = try ConvField(channels: 3, dtype: .float64, seed: 5, on: cpu)
    var rng = RandomState(seed: 6)
    let y0 = try Tensor.normal([2, 3, 5, 5], dtype: .float64, rng: &rng, on: cpu)
    let times = [0, 0.5, 1.0]
    let w = try weights([2, 3, 5, 5], times.count)
    for options in [
      ODEOptions.fixed(.rk4, steps: 10), ODEOptions(solver: .dopri5, rtol: 1e-9, atol: 1e-9),
    ] {
      let (_, direct, _) = try lossAndGradients(
        model, model.field, y0, times: times, options: options, method: .direct, weights: w)
      let (_, checkpointed, _) = try lossAndGradients(
        model, model.field, y0, times: times, options: options, method: .checkpointed,
        weights: w)
      let (_, backsolve, _) = try lossAndGradients(
        model, model.field, y0, times: times, options: options, method: .backsolve,
        weights: w)
      XCTAssertLessThan(
        relativeError(checkpointed, direct), 1e-12, "\(options.solver) checkpointed vs direct")
      XCTAssertLessThan(
        relativeError(backsolve, direct), 1e-5, "\(options.solver) backsolve vs direct")
    }
  }

  func testNAGAdjointsAgreeWithDirect() throws {
    let model = try MLPField(dim: 3, hidden: 6, dtype: .float64, seed: 7, on: cpu)
    var rng = RandomState(seed: 8)
    let y0 = try Tensor.normal([2, 3], dtype: .float64, rng: &rng, on: cpu)
    let times = [0, 0.5, 1.0]
    let w = try weights([2, 3], times.count)
    let options = ODEOptions.fixed(.nag(momentum: 0.6), steps: 20)
    let (_, direct, _) = try lossAndGradients(
      model, model.field, y0, times: times, options: options, method: .direct, weights: w)
    let (_, checkpointed, _) = try lossAndGradients(
      model, model.field, y0, times: times, options: options, method: .checkpointed,
      weights: w)
    XCTAssertLessThan(relativeError(checkpointed, direct), 1e-12, "NAG checkpointed vs direct")
    // Backsolve with NAG integrates the continuous adjoint with a first-order method: it agrees
    // with the discrete gradient only to O(h); with a fine RK4 backward solve, to O(h) as well.
    let (_, backsolve, _) = try lossAndGradients(
      model, model.field, y0, times: times, options: options, method: .backsolve,
      adjoint: AdjointOptions(solver: .rk4), weights: w)
    XCTAssertLessThan(relativeError(backsolve, direct), 0.05, "NAG backsolve vs direct")
  }
}
