import DiffEqNet
import NumericTestSupport
import XCTest

/// Continuous normalizing flows: the trace terms of `MLP+Trace` and `ConcatSquashMLP`, the
/// augmented field's log-density, the adjoint's gradients, sampling.
final class CNFTests: XCTestCase {
  let cpu = CPUBackend()

  func backends() -> [any Backend] {
    var out: [any Backend] = [cpu]
    if let first = OpenCLBackend.devices().first,
      let b = try? OpenCLBackend(deviceIndex: first.index), b.supports(.float64)
    {
      out.append(b)
    }
    return out
  }

  /// For f(z) = Az + b, dℓ/dt = −tr(A) exactly, so ℓ(t) = −t·tr(A) whatever the solver's steps.
  func testLinearFieldLogDensityChangeIsMinusTTraceA() throws {
    for backend in backends() {
      for d in [2, 3] {
        var rng = RandomState(seed: UInt64(d))
        let linear = try MLP([d, d], dtype: .float64, rng: &rng, on: backend)
        let a = try linear.layers[0].weight.value.toDoubles()
        let traceA = (0..<d).reduce(0.0) { $0 + a[$1 * d + $1] }
        let z0 = try Tensor.normal([5, d], dtype: .float64, rng: &rng, on: backend)
        let y0 = try Tensor.concat(
          [z0, try Tensor.zeros([5, 1], dtype: .float64, on: backend)], axis: 1)
        let times = [0, 0.4, 1.3]
        let sol = try odeint(
          linear.divergenceField.augmented(probes: nil), y0, times: times,
          options: ODEOptions(solver: .dopri5, rtol: 1e-8, atol: 1e-8))
        for (i, t) in times.enumerated() {
          let ell = try sol.states[i].slice(axis: 1, d..<(d + 1)).toDoubles()
          for v in ell {
            XCTAssertEqual(v, -t * traceA, accuracy: 1e-12 * max(1, abs(t * traceA)), "\(backend)")
          }
        }
      }
    }
  }

  /// The mean of Hutchinson's εᵀJε over many probes lies within 5 standard errors (the probes'
  /// own sample standard deviation over √N) of the exact trace, for both probe kinds.
  func testHutchinsonAgreesWithExactTraceInExpectation() throws {
    for backend in backends() {
      var rng = RandomState(seed: 11)
      let net = try ConcatSquashMLP(
        [2, 16, 16, 2], activation: .softplus, dtype: .float64, rng: &rng, on: backend)
      let point = try Tensor.normal([1, 2], dtype: .float64, rng: &rng, on: backend)
      let exact = try net.trace(at: 0.3, point, probes: nil).trace.item()
      let n = 20_000
      let z = try Tensor.concat(Array(repeating: point, count: n), axis: 0)
      for estimator in [TraceEstimator.hutchinson, .hutchinsonGaussian] {
        let probes = try estimator.probes(
          batch: n, dimension: 2, dtype: .float64, rng: &rng, on: backend)
        let draws = try net.trace(at: 0.3, z, probes: probes).trace.toDoubles()
        let mean = draws.reduce(0, +) / Double(n)
        let variance = draws.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
        let standardError = (variance / Double(n)).squareRoot()
        XCTAssertGreaterThan(standardError, 0, "the estimator should vary")
        XCTAssertLessThan(
          abs(mean - exact), 5 * standardError,
          "\(estimator) on \(backend): mean \(mean) vs exact \(exact) (se \(standardError))")
      }
    }
  }

  /// The exact trace equals tr(∂f/∂z) from a Jacobian by central differences of f.
  func testExactTraceMatchesFiniteDifferenceJacobian() throws {
    var rng = RandomState(seed: 12)
    let net = try ConcatSquashMLP([3, 8, 8, 3], dtype: .float64, rng: &rng, on: cpu)
    let z = try Tensor.normal([4, 3], dtype: .float64, rng: &rng, on: cpu)
    let trace = try net.trace(at: 0.7, z, probes: nil).trace.toDoubles()
    var values = try z.toDoubles()
    let eps = 1e-6
    for row in 0..<4 {
      var sum = 0.0
      for k in 0..<3 {
        let v = values[row * 3 + k]
        values[row * 3 + k] = v + eps
        let plus = try net.trace(
          at: 0.7, Tensor(values, shape: [4, 3], dtype: .float64, on: cpu), probes: nil
        ).value.toDoubles()
        values[row * 3 + k] = v - eps
        let minus = try net.trace(
          at: 0.7, Tensor(values, shape: [4, 3], dtype: .float64, on: cpu), probes: nil
        ).value.toDoubles()
        values[row * 3 + k] = v
        sum += (plus[row * 3 + k] - minus[row * 3 + k]) / (2 * eps)
      }
      XCTAssertEqual(trace[row], sum, accuracy: 1e-7)
    }
  }

  /// The tape-free trace VJP (MLP's and ConcatSquash's) equals the tape's VJP of the recorded
  /// trace pass, for both activations, exact and Hutchinson, on both backends.
  func testTraceVectorJacobianAgreesWithTape() throws {
    for backend in backends() {
      for activation in [Activation.tanh, .softplus] {
        for exact in [true, false] {
          var rng = RandomState(seed: 21)
          let net = try ConcatSquashMLP(
            [3, 10, 10, 3], activation: activation, dtype: .float64, rng: &rng, on: backend)
          let mlp = try MLP(
            [3, 10, 10, 3], activation: activation, dtype: .float64, rng: &rng, on: backend)
          let z = try Tensor.normal([6, 3], dtype: .float64, rng: &rng, on: backend)
          let probes =
            exact
            ? nil
            : try TraceEstimator.hutchinsonGaussian.probes(
              batch: 6, dimension: 3, dtype: .float64, rng: &rng, on: backend)
          let a = try Tensor.normal([6, 3], dtype: .float64, rng: &rng, on: backend)
          let c = try Tensor.normal([6, 1], dtype: .float64, rng: &rng, on: backend)
          let (_, tapeInput, tapeParams) = try vjp(net, at: [z], cotangents: [a, c]) { xs in
            let r = try net.trace(at: 0.45, xs[0], probes: probes)
            return [r.value, r.trace]
          }
          let fused = try net.traceVectorJacobian(
            at: 0.45, z, probes: probes, cotangent: a, traceCotangent: c)
          let e = relativeError(
            try flatGradients(net, fused.input, fused.parameters),
            try flatGradients(net, tapeInput[0], tapeParams))
          XCTAssertLessThan(e, 1e-12, "ConcatSquash \(activation) exact \(exact) \(backend)")

          let (_, mlpInput, mlpParams) = try vjp(mlp, at: [z], cotangents: [a, c]) { xs in
            let r = try mlp.trace(at: xs[0], probes: probes)
            return [r.value, r.trace]
          }
          let mlpFused = try mlp.traceVectorJacobian(
            at: z, probes: probes, cotangent: a, traceCotangent: c)
          let eMLP = relativeError(
            try flatGradients(mlp, mlpFused.input, mlpFused.parameters),
            try flatGradients(mlp, mlpInput[0], mlpParams))
          XCTAssertLessThan(eMLP, 1e-12, "MLP \(activation) exact \(exact) \(backend)")
        }
      }
    }
  }

  /// The flow's NLL gradients by the backsolve adjoint (hand-derived trace VJP) against central
  /// differences of re-solved losses, with respect to the data and every parameter; the same
  /// probes in every solve.
  func testFlowGradientsMatchFiniteDifferences() throws {
    for trace in [TraceEstimator.exact, .hutchinson] {
      var rng = RandomState(seed: 31)
      let flow = try ContinuousNormalizingFlow(
        dimension: 2, width: 6, hidden: 2, options: ODEOptions(rtol: 1e-11, atol: 1e-11),
        gradient: .backsolve, trace: trace, dtype: .float64, rng: &rng, on: cpu)
      let x = try Tensor.normal([5, 2], dtype: .float64, rng: &rng, on: cpu)
      func loss(_ x: Tensor) throws -> Tensor {
        var probeRNG = RandomState(seed: 77)
        return try flow.logDensity(x, rng: &probeRNG).logDensity.mean() * -1.0
      }
      let (_, gx, gp) = try vjp(flow, at: [x], cotangent: nil) { try loss($0[0]) }
      let adjoint = try flatGradients(flow, gx[0], gp)
      let eps = 1e-5
      var values = try x.toDoubles()
      var numeric: [Double] = []
      for i in values.indices {
        let v = values[i]
        values[i] = v + eps
        let plus = try loss(Tensor(values, shape: [5, 2], dtype: .float64, on: cpu)).item()
        values[i] = v - eps
        let minus = try loss(Tensor(values, shape: [5, 2], dtype: .float64, on: cpu)).item()
        values[i] = v
        numeric.append((plus - minus) / (2 * eps))
      }
      numeric += try parameterCentralDifferences(flow, eps: eps, on: cpu) { try loss(x).item() }
      let e = relativeError(adjoint, numeric)
      XCTAssertLessThan(e, 1e-6, "\(trace): adjoint vs finite differences")
    }
  }

  /// Samples carried back from the base density, then evaluated forward, land on their draws,
  /// with the log-density the sampling pass reported.
  func testSampleThenEvaluateRoundTrips() throws {
    for backend in backends() {
      var rng = RandomState(seed: 41)
      let flow = try ContinuousNormalizingFlow(
        dimension: 2, width: 16, hidden: 2, endTime: 1,
        options: ODEOptions(rtol: 1e-10, atol: 1e-10), gradient: .backsolve, trace: .exact,
        dtype: .float64, rng: &rng, on: backend)
      let z = try Tensor.normal([8, 2], dtype: .float64, rng: &rng, on: backend)
      let (x, sampledLogDensity) = try flow.sample(from: z)
      let moved = relativeError(try x.toDoubles(), try z.toDoubles())
      XCTAssertGreaterThan(moved, 1e-2, "the flow should move the samples")
      let (logDensity, latent) = try flow.logDensity(x, rng: &rng)
      XCTAssertLessThan(
        relativeError(try latent.toDoubles(), try z.toDoubles()), 1e-7, "\(backend)")
      XCTAssertLessThan(
        relativeError(try logDensity.toDoubles(), try sampledLogDensity.toDoubles()), 1e-7,
        "\(backend)")
    }
  }
}
