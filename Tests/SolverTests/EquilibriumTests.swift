import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// Fixed points and their implicit gradients, against closed forms and finite differences.
final class EquilibriumTests: XCTestCase {
  let cpu = CPUBackend()

  /// f(z, x) = σ(z·Wᵀ + x·Uᵀ + b), contractive: W is scaled to Frobenius norm `contraction`
  /// (so its spectral norm is below it) and σ is the identity or tanh.
  final class Field: Module {
    let w: Parameter
    let u: Parameter
    let b: Parameter
    let nonlinear: Bool

    init(
      dim: Int, input: Int, contraction: Double, nonlinear: Bool, seed: UInt64,
      on backend: any Backend
    )
      throws
    {
      var rng = RandomState(seed: seed)
      let raw = try Tensor.normal([dim, dim], dtype: .float64, rng: &rng, on: backend)
      let norm = try (raw * raw).sum().item().squareRoot()
      w = Parameter(try raw * (contraction / norm))
      u = Parameter(try Tensor.normal([dim, input], dtype: .float64, rng: &rng, on: backend))
      b = Parameter(try Tensor.normal([dim], std: 0.3, dtype: .float64, rng: &rng, on: backend))
      self.nonlinear = nonlinear
      super.init()
    }

    func callAsFunction(_ z: Tensor, _ x: Tensor) throws -> Tensor {
      let pre =
        try z.matmul(w.value, transposeOther: true) + x.matmul(u.value, transposeOther: true)
        + b.value
      return nonlinear ? try pre.tanh() : pre
    }
  }

  /// Solves A·s = r for a small dense A (rows of `a`), in float64.
  func solve(_ a: [[Double]], _ r: [Double]) -> [Double] {
    var a = a
    var r = r
    let n = r.count
    for c in 0..<n {
      let p = (c..<n).max { abs(a[$0][c]) < abs(a[$1][c]) }!
      a.swapAt(c, p)
      r.swapAt(c, p)
      for i in (c + 1)..<n {
        let f = a[i][c] / a[c][c]
        for k in c..<n { a[i][k] -= f * a[c][k] }
        r[i] -= f * r[c]
      }
    }
    var s = [Double](repeating: 0, count: n)
    for i in stride(from: n - 1, through: 0, by: -1) {
      s[i] = (r[i] - ((i + 1)..<n).reduce(0) { $0 + a[i][$1] * s[$1] }) / a[i][i]
    }
    return s
  }

  /// For a linear f, z* = (I − W)⁻¹(U x + b) per sample: every method reaches it.
  func testEveryMethodReachesTheClosedForm() throws {
    let (dim, input, batch) = (6, 3, 4)
    let field = try Field(
      dim: dim, input: input, contraction: 0.8, nonlinear: false, seed: 1, on: cpu)
    var rng = RandomState(seed: 2)
    let x = try Tensor.normal([batch, input], dtype: .float64, rng: &rng, on: cpu)
    let w = try field.w.value.toDoubles()
    let u = try field.u.value.toDoubles()
    let b = try field.b.value.toDoubles()
    let xs = try x.toDoubles()
    var expected: [Double] = []
    let iMinusW = (0..<dim).map { i in (0..<dim).map { j in (i == j ? 1 : 0) - w[i * dim + j] } }
    for s in 0..<batch {
      let rhs = (0..<dim).map { i in
        b[i] + (0..<input).reduce(0) { $0 + u[i * input + $1] * xs[s * input + $1] }
      }
      expected += solve(iMinusW, rhs)
    }
    let start = try Tensor.zeros([batch, dim], dtype: .float64, on: cpu)
    var iterations: [String: Int] = [:]
    for method in [
      FixedPointMethod.iteration, .anderson(memory: 5, mixing: 1),
      .anderson(memory: 3, mixing: 0.7), .broyden(memory: 8), .broyden(memory: 2),
      .broyden(memory: 2 * dim),
    ] {
      let (z, stats) = try equilibrium(
        { try field($0, $1) }, input: x, parameters: field, start: start,
        forward: FixedPointOptions(method: method, tolerance: 1e-11, maxIterations: 2000))
      XCTAssertTrue(stats.forwardConverged, "\(method)")
      XCTAssertLessThan(relativeError(try z.toDoubles(), expected), 1e-9, "\(method)")
      iterations["\(method)"] = stats.forwardIterations
    }
    for accelerated in [FixedPointMethod.anderson(memory: 5, mixing: 1), .broyden(memory: 8)] {
      XCTAssertLessThan(
        iterations["\(accelerated)"]!, iterations["\(FixedPointMethod.iteration)"]!,
        "\(accelerated) must need fewer evaluations: \(iterations)")
    }
    // On a linear map, Broyden with all its updates kept terminates in at most 2·dim steps (Gay
    // 1979), 2·dim + 1 evaluations; iteration alone needs far more for this tolerance.
    XCTAssertLessThanOrEqual(
      iterations["\(FixedPointMethod.broyden(memory: 2 * dim))"]!, 2 * dim + 1, "\(iterations)")
  }

  /// Broyden's per-sample inverse Jacobian: after an update B maps the step's Δg to its Δz
  /// (the secant condition), for each sample separately.
  func testBroydenUpdateSatisfiesTheSecantCondition() throws {
    var rng = RandomState(seed: 21)
    let (batch, width) = (3, 5)
    var inverse = BroydenInverse(memory: 4, batch: batch, width: width)
    for _ in 0..<3 {
      let dz = try Tensor.normal([batch, width], dtype: .float64, rng: &rng, on: cpu)
      let dg = try Tensor.normal([batch, width], dtype: .float64, rng: &rng, on: cpu)
      let update = try inverse.proposedUpdate(dz: dz, dg: dg)
      try inverse.append(
        numerator: update.numerator, v: update.v,
        denominators: try update.denominators.toDoubles())
      XCTAssertLessThan(
        relativeError(try inverse.times(dg).toDoubles(), try dz.toDoubles()), 1e-12)
    }
  }

  /// Where Broyden cannot converge (z = z² + 0.3 has no real solution) its full steps wander; the
  /// search returns the iterate with the lowest residual, and reports that residual. From
  /// z = 0.5 the relative residuals of the first three iterates are 0.091, 0.087 and 1.9.
  func testBroydenReturnsItsBestIterate() throws {
    let f: (Tensor) throws -> Tensor = { z in try z * z + 0.3 }
    let start = try Tensor([0.5], shape: [1, 1], dtype: .float64, on: cpu)
    func relative(_ z: Tensor) throws -> Double {
      let fz = try f(z).toDoubles()[0]
      return abs(fz - (try z.toDoubles()[0])) / abs(fz)
    }
    let result = try findFixedPoint(
      f, from: start,
      options: FixedPointOptions(method: .broyden(memory: 5), tolerance: 1e-6, maxIterations: 3))
    XCTAssertFalse(result.converged)
    XCTAssertEqual(result.iterations, 3)
    XCTAssertEqual(result.relativeResidual, try relative(result.value), accuracy: 1e-12)
    XCTAssertLessThan(result.relativeResidual, 0.088, "the second iterate's residual is 0.0871")
  }

  /// loss = Σ z*·r on a nonlinear f: the implicit gradients with respect to x and every
  /// parameter equal central differences of z* solved to 1e-13, on every backend with float64.
  func testImplicitGradientsMatchFiniteDifferences() throws {
    var backends: [any Backend] = [cpu]
    if let first = OpenCLBackend.devices().first,
      let b = try? OpenCLBackend(deviceIndex: first.index),
      b.supports(.float64)
    {
      backends.append(b)
    }
    for backend in backends {
      let (dim, input, batch) = (5, 3, 2)
      let field = try Field(
        dim: dim, input: input, contraction: 0.7, nonlinear: true, seed: 3, on: backend)
      var rng = RandomState(seed: 4)
      let x = try Tensor.normal([batch, input], dtype: .float64, rng: &rng, on: backend)
      let r = try Tensor.normal([batch, dim], dtype: .float64, rng: &rng, on: backend)
      let start = try Tensor.zeros([batch, dim], dtype: .float64, on: backend)
      let tight = FixedPointOptions(tolerance: 1e-13, maxIterations: 500)
      func loss(_ x: Tensor) throws -> Double {
        let (z, _) = try equilibrium(
          { try field($0, $1) }, input: x, parameters: field, start: start, forward: tight)
        return try (z * r).sum().item()
      }
      var analytic: [String: [Double]] = [:]
      for backward in [
        FixedPointMethod.anderson(memory: 5, mixing: 1), .broyden(memory: 8), .iteration,
      ] {
        let (_, gx, gp) = try vjp(field, at: [x], cotangent: nil) { xs in
          let (z, _) = try equilibrium(
            { try field($0, $1) }, input: xs[0], parameters: field, start: start, forward: tight,
            gradient: .implicit(
              FixedPointOptions(method: backward, tolerance: 1e-13, maxIterations: 500)))
          return try (z * r).sum()
        }
        analytic["\(backward)"] = try gx[0].toDoubles()
        for g in gp { analytic["\(backward)"]! += try g.toDoubles() }
      }
      let eps = 1e-6
      var numeric: [Double] = []
      var xv = try x.toDoubles()
      for i in xv.indices {
        let v = xv[i]
        xv[i] = v + eps
        let plus = try loss(try Tensor(xv, shape: x.shape, dtype: .float64, on: backend))
        xv[i] = v - eps
        let minus = try loss(try Tensor(xv, shape: x.shape, dtype: .float64, on: backend))
        xv[i] = v
        numeric.append((plus - minus) / (2 * eps))
      }
      numeric += try parameterCentralDifferences(field, eps: eps, on: backend) { try loss(x) }
      for (backward, gradient) in analytic {
        let e = relativeError(gradient, numeric)
        XCTAssertLessThan(
          e, 1e-6,
          "implicit gradients (\(backward)) vs central differences on \(backend.name): \(e)")
      }
    }
  }

  /// On a linear f the two backward rules have closed forms: the implicit gradient with respect
  /// to x is g·(I − W)⁻¹·U, the Jacobian-free one g·U; they differ by the (I − W)⁻¹ term.
  func testJacobianFreeDiffersFromImplicitByTheInverse() throws {
    let (dim, input) = (4, 2)
    let field = try Field(
      dim: dim, input: input, contraction: 0.6, nonlinear: false, seed: 5, on: cpu)
    var rng = RandomState(seed: 6)
    let x = try Tensor.normal([1, input], dtype: .float64, rng: &rng, on: cpu)
    let r = try Tensor.normal([1, dim], dtype: .float64, rng: &rng, on: cpu)
    let start = try Tensor.zeros([1, dim], dtype: .float64, on: cpu)
    func gradient(_ rule: EquilibriumGradient) throws -> [Double] {
      let (_, g) = try valueAndGrad(at: [x]) { xs in
        let (z, _) = try equilibrium(
          { try field($0, $1) }, input: xs[0], parameters: field, start: start,
          forward: FixedPointOptions(tolerance: 1e-13, maxIterations: 500), gradient: rule)
        return try (z * r).sum()
      }
      return try g[0].toDoubles()
    }
    let w = try field.w.value.toDoubles()
    let u = try field.u.value.toDoubles()
    let g = try r.toDoubles()
    // λ solves (I − W)ᵀ λ = g.
    let transposed = (0..<dim).map { i in (0..<dim).map { j in (i == j ? 1 : 0) - w[j * dim + i] } }
    let lambda = solve(transposed, g)
    let implicitExpected = (0..<input).map { k in
      (0..<dim).reduce(0) { $0 + lambda[$1] * u[$1 * input + k] }
    }
    let jfbExpected = (0..<input).map { k in (0..<dim).reduce(0) { $0 + g[$1] * u[$1 * input + k] }
    }
    let implicit = try gradient(.implicit(FixedPointOptions(tolerance: 1e-13, maxIterations: 500)))
    let jfb = try gradient(.jacobianFree)
    XCTAssertLessThan(relativeError(implicit, implicitExpected), 1e-9)
    XCTAssertLessThan(relativeError(jfb, jfbExpected), 1e-12)
    XCTAssertGreaterThan(relativeError(jfb, implicitExpected), 1e-3, "the two rules must differ")
  }

  /// The continuous DEQ's steady state of dz/dt = f(z, x) − z is the fixed-point search's z*,
  /// for every adaptive solver; a step cap too small to reach it is reported, not thrown.
  func testSteadyStateIsTheFixedPoint() throws {
    let field = try Field(dim: 5, input: 3, contraction: 0.8, nonlinear: true, seed: 9, on: cpu)
    var rng = RandomState(seed: 10)
    let x = try Tensor.normal([3, 3], dtype: .float64, rng: &rng, on: cpu)
    let start = try Tensor.zeros([3, 5], dtype: .float64, on: cpu)
    let (root, _) = try equilibrium(
      { try field($0, $1) }, input: x, parameters: field, start: start,
      forward: FixedPointOptions(tolerance: 1e-12, maxIterations: 500))
    for solver in [ODESolver.dopri5, .tsit5, .bosh3] {
      let (z, stats) = try steadyState(
        { try field($0, $1) }, input: x, parameters: field, start: start,
        options: SteadyStateOptions(solver: solver, rtol: 1e-9, atol: 1e-9, maxSteps: 5000))
      XCTAssertTrue(stats.forwardConverged, "\(solver)")
      XCTAssertLessThan(
        relativeError(try z.toDoubles(), try root.toDoubles()), 1e-7, "\(solver)")
      XCTAssertGreaterThan(stats.forwardIterations, 0)
    }
    let (_, capped) = try steadyState(
      { try field($0, $1) }, input: x, parameters: field, start: start,
      options: SteadyStateOptions(rtol: 1e-12, atol: 1e-12, maxSteps: 3))
    XCTAssertFalse(capped.forwardConverged)
    XCTAssertThrowsError(
      try steadyState(
        { try field($0, $1) }, input: x, parameters: field, start: start,
        options: SteadyStateOptions(solver: .rk4)))
  }

  /// Started at its fixed point, a search stops after its first check: what makes a perfect
  /// Skip DEQ predictor free.
  func testAPerfectStartStopsAtTheFirstCheck() throws {
    let field = try Field(dim: 4, input: 2, contraction: 0.5, nonlinear: true, seed: 11, on: cpu)
    var rng = RandomState(seed: 12)
    let x = try Tensor.normal([2, 2], dtype: .float64, rng: &rng, on: cpu)
    let options = FixedPointOptions(tolerance: 1e-6, maxIterations: 100)
    let (root, _) = try equilibrium(
      { try field($0, $1) }, input: x, parameters: field,
      start: try Tensor.zeros([2, 4], dtype: .float64, on: cpu),
      forward: FixedPointOptions(tolerance: 1e-14, maxIterations: 500))
    let (_, stats) = try equilibrium(
      { try field($0, $1) }, input: x, parameters: field, start: root, forward: options)
    XCTAssertEqual(stats.forwardIterations, 1)
  }

  /// The Skip variants' regulariser reaches the predictor (Skip DEQ) and f's parameters (Skip
  /// Reg. DEQ, through f(0, x) and through z*, which is not detached).
  func testSkipRegulariserReachesWhatItShould() throws {
    var c = ModelZoo.Configuration()
    c.width = 8
    c.dtype = .float64
    var rng = RandomState(seed: 13)
    let x = try Tensor.normal([2, 8, 6, 6], dtype: .float64, rng: &rng, on: cpu)
    for (skip, probe) in [
      (DEQBlock.SkipStart.predicted(weight: 0.01), "predictorConv.weight"),
      (.firstIterate(weight: 0.01), "conv1.weight"),
    ] {
      var seedRNG = RandomState(seed: 14)
      let block = try DEQBlock(
        channels: 8, forward: c.deqForward, gradient: c.deqGradient, skip: skip, dtype: .float64,
        rng: &seedRNG, on: cpu)
      let (_, grads) = try valueAndGrad(block) {
        _ = try block(x)
        return try XCTUnwrap(block.regularizer)
      }
      let g = try XCTUnwrap(grads[probe]).toDoubles()
      XCTAssertGreaterThan(g.map { $0 * $0 }.reduce(0, +), 0, "\(skip): no gradient at \(probe)")
    }
  }

  /// A cap reached is reported, not thrown; a NaN residual is an error naming the iteration.
  func testNonConvergenceIsReportedAndNaNIsAnError() throws {
    let start = try Tensor([1, 2], shape: [1, 2], dtype: .float64, on: cpu)
    // z ↦ 2z − 1 diverges from any start but the fixed point 1.
    let result = try findFixedPoint(
      { try $0 * 2 - 1 }, from: start,
      options: FixedPointOptions(method: .iteration, tolerance: 1e-8, maxIterations: 7))
    XCTAssertFalse(result.converged)
    XCTAssertEqual(result.iterations, 7)
    XCTAssertThrowsError(
      try findFixedPoint(
        { try $0.log() }, from: try Tensor([-1, -2], shape: [1, 2], dtype: .float64, on: cpu),
        options: FixedPointOptions())
    ) { XCTAssertTrue("\($0)".contains("fixed-point residual"), "\($0)") }
    for method in [
      FixedPointMethod.iteration, .anderson(memory: 3, mixing: 1), .broyden(memory: 3),
    ] {
      XCTAssertThrowsError(
        try findFixedPoint(
          { try $0 * 2 - 1 }, from: start,
          options: FixedPointOptions(
            method: method, tolerance: 1e-8, maxIterations: 1, requireConvergence: true))
      ) {
        guard case ODEError.notConverged(_, 1, let residual) = $0, residual > 1e-8 else {
          return XCTFail("\(method): \($0)")
        }
      }
    }
  }

  /// With convergence required, a steady state not reached within the step cap is an error
  /// naming the residual; one reached is not.
  func testRequiredSteadyStateThrowsAtItsCap() throws {
    let field = try Field(dim: 4, input: 2, contraction: 0.8, nonlinear: true, seed: 15, on: cpu)
    var rng = RandomState(seed: 16)
    let x = try Tensor.normal([2, 2], dtype: .float64, rng: &rng, on: cpu)
    let start = try Tensor.zeros([2, 4], dtype: .float64, on: cpu)
    XCTAssertThrowsError(
      try steadyState(
        { try field($0, $1) }, input: x, parameters: field, start: start,
        options: SteadyStateOptions(
          rtol: 1e-12, atol: 1e-12, maxSteps: 3, requireConvergence: true))
    ) {
      guard case ODEError.notConverged = $0 else { return XCTFail("\($0)") }
    }
    XCTAssertNoThrow(
      try steadyState(
        { try field($0, $1) }, input: x, parameters: field, start: start,
        options: SteadyStateOptions(maxSteps: 1000, requireConvergence: true)))
  }
}
