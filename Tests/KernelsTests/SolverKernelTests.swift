import Foundation
import Kernels
import NumericTestSupport
import XCTest

// The fused solver primitives (`linearCombination`, `scaledErrorSquaredSum`) and the NaN semantics
// of `BinaryOp.maximum`, on the CPU backend and on the OpenCL backend (device 0, or the one
// DIFFEQNET_TEST_OPENCL_DEVICE names; skipped when there is no OpenCL device), against float64
// loops written here. Inputs are seeded random values rounded to the element type, so the
// reference sees exactly what the backend sees; outputs are poisoned with NaN so an element
// that is not written fails the comparison, and a poisoned tail past `count` must survive, so an
// element written out of range fails too.
final class SolverKernelTests: XCTestCase, KernelTestCase {
  static let deviceIndex =
    Int(ProcessInfo.processInfo.environment["DIFFEQNET_TEST_OPENCL_DEVICE"] ?? "") ?? 0
  static let openCL = Result { try OpenCLBackend(deviceIndex: deviceIndex) }

  /// Element counts: below, around and well above one work-group, and one past a power of two.
  static let sizes = [1, 7, 97, 1000, 4099, 65536 + 3]
  /// 1–8 terms take one launch; 9 and 13 two (8 + 7); 16 three (8 + 7 + 1).
  static let termCounts = [1, 2, 3, 7, 8, 9, 13, 16]
  /// Poisoned elements past `count` that no operation may write.
  static let tail = 5

  var rng = SplitMix64(seed: 0)

  override func setUp() {
    super.setUp()
    rng = seedForTestName()
  }

  /// The CPU backend, and the OpenCL backend when a device exists; each with the types it supports.
  func backends() throws -> [(backend: any Backend, dtypes: [DType])] {
    var all: [(any Backend, [DType])] = [(CPUBackend(), [.float32, .float64])]
    if OpenCLBackend.devices().isEmpty {
      if TestRequirement.opencl.isRequired { XCTFail("DIFFEQNET_REQUIRE names opencl: no device") }
    } else {
      let b = try Self.openCL.get()
      all.append((b, b.supports(.float64) ? [.float32, .float64] : [.float32]))
    }
    return all
  }

  // MARK: linearCombination

  func testLinearCombination() throws {
    for (b, types) in try backends() {
      for t in types {
        for n in Self.sizes {
          for terms in Self.termCounts {
            let xs = (0..<terms).map { _ in random(n, -2...2, t) }
            let cs = random(terms, -1.5...1.5, t)
            var ref = [Double](repeating: 0, count: n)
            for k in 0..<terms {
              for i in 0..<n { ref[i] += cs[k] * xs[k][i] }
            }
            let bufs = try xs.map { try upload(b, $0, t) }
            let y = try poisoned(b, n + Self.tail, t)
            try b.linearCombination(bufs, coefficients: cs, into: y, count: n, dtype: t)
            let out = try download(b, y, n + Self.tail, t)
            let what = "\(b.name) [\(t)] linearCombination of \(terms) terms, n = \(n)"
            let err = relativeError(Array(out.prefix(n)), ref)
            let tol = tolerance(t)
            // NaN (an unwritten element) compares false and fails.
            XCTAssertTrue(
              err <= tol, "\(what): relative error \(err) exceeds \(tol) (‖out − ref‖/‖ref‖)")
            XCTAssertTrue(out.suffix(Self.tail).allSatisfy(\.isNaN), "\(what): wrote past count")
          }
        }
      }
    }
  }

  /// Unused kernel slots are bound with coefficient 0; an inf or NaN in a used input must not leak
  /// into the result through them (0·inf = NaN), and must propagate where it is used.
  func testLinearCombinationNonFiniteInputs() throws {
    for (b, types) in try backends() {
      for t in types {
        let x0 = try upload(b, [.infinity, 1, 2], t)
        let x1 = try upload(b, [1, .nan, 3], t)
        for (xs, cs, expected) in [
          ([x0], [2.0], [Double.infinity, 2, 4]),
          ([x0, x1], [1.0, 0.5], [Double.infinity, .nan, 3.5]),
        ] {
          let y = try poisoned(b, 3, t)
          try b.linearCombination(xs, coefficients: cs, into: y, count: 3, dtype: t)
          let out = try download(b, y, 3, t)
          for (o, e) in zip(out, expected) {
            XCTAssertTrue(
              o == e || (o.isNaN && e.isNaN),
              "\(b.name) [\(t)] \(xs.count) terms: got \(out), expected \(expected)")
          }
        }
      }
    }
  }

  // MARK: scaledErrorSquaredSum

  func testScaledErrorSquaredSum() throws {
    for (b, types) in try backends() {
      for t in types {
        for n in Self.sizes {
          for (atol, rtol) in [(1e-4, 1e-3), (1.0, 0.0), (1e-6, 0.5)] {
            let e = random(n, -1e-3...1e-3, t)
            let y0 = random(n, -3...3, t)
            let y1 = random(n, -3...3, t)
            // The scale as the backend forms it: atol and rtol in the element type.
            let (a, r) = (rounded(atol, t), rounded(rtol, t))
            var ref = 0.0
            for i in 0..<n {
              let v = e[i] / (a + r * max(abs(y0[i]), abs(y1[i])))
              ref += v * v
            }
            let out = try b.scaledErrorSquaredSum(
              error: try upload(b, e, t), y0: try upload(b, y0, t), y1: try upload(b, y1, t),
              atol: atol, rtol: rtol, count: n, dtype: t)
            let err = abs(out - ref) / ref
            let tol = tolerance(t)
            XCTAssertTrue(
              err <= tol,
              "\(b.name) [\(t)] scaledErrorSquaredSum n = \(n), atol \(atol), rtol \(rtol): "
                + "\(out) vs \(ref), relative error \(err) exceeds \(tol) (|out − ref|/|ref|)")
          }
        }
      }
    }
  }

  /// Several terms of different lengths at once: each sum equals the float64 loop's, and on
  /// OpenCL all of them come back in one host synchronisation (an adaptive step's one read).
  func testScaledErrorSquaredSumsReadsEveryTermOnce() throws {
    for (b, types) in try backends() {
      for t in types {
        let lengths = [1, 97, 4099, 65536 + 3]
        var terms: [ScaledErrorTerm] = []
        var references: [Double] = []
        for n in lengths {
          let (e, y0, y1) = (random(n, -1...1, t), random(n, -3...3, t), random(n, -3...3, t))
          let (a, r) = (rounded(1e-3, t), rounded(1e-2, t))
          references.append(
            (0..<n).reduce(0.0) { sum, i in
              let v = e[i] / (a + r * max(abs(y0[i]), abs(y1[i])))
              return sum + v * v
            })
          terms.append(
            ScaledErrorTerm(
              error: try upload(b, e, t), y0: try upload(b, y0, t), y1: try upload(b, y1, t),
              count: n))
        }
        try b.synchronize()
        let before = b.traffic
        let out = try b.scaledErrorSquaredSums(terms, atol: 1e-3, rtol: 1e-2, dtype: t)
        let used = b.traffic - before
        XCTAssertEqual(out.count, lengths.count)
        for (i, (got, ref)) in zip(out, references).enumerated() {
          let err = abs(got - ref) / ref
          XCTAssertTrue(
            err <= tolerance(t),
            "\(b.name) [\(t)] term \(i) of \(lengths[i]): \(got) vs \(ref), relative error "
              + "\(err) exceeds \(tolerance(t))")
        }
        if b is OpenCLBackend {
          XCTAssertEqual(
            used.hostSynchronizations, 1, "\(b.name): \(lengths.count) sums took \(used)")
          XCTAssertEqual(used.launches, lengths.count)
        }
      }
    }
  }

  /// A NaN error component makes the norm NaN on every backend, so the step is rejected.
  func testScaledErrorSquaredSumPropagatesNaNError() throws {
    for (b, types) in try backends() {
      for t in types {
        let n = 4099
        var e = random(n, -1...1, t)
        e[n / 2] = .nan
        let y = try upload(b, random(n, -1...1, t), t)
        let out = try b.scaledErrorSquaredSum(
          error: try upload(b, e, t), y0: y, y1: y, atol: 1e-3, rtol: 1e-3, count: n, dtype: t)
        XCTAssertTrue(out.isNaN, "\(b.name) [\(t)]: expected NaN, got \(out)")
      }
    }
  }

  // MARK: Fusion

  /// The fused overrides allocate nothing proportional to `count` (the unfused fallbacks of
  /// `Backend+Solver.swift` allocate whole temporaries): this fails if a backend's override is
  /// missing or has stopped being the protocol witness.
  func testSolverPrimitivesAllocateNoTemporaries() throws {
    for (b, types) in try backends() {
      for t in types {
        let n = 65536 + 3
        let xs = try (0..<3).map { _ in try upload(b, random(n, -1...1, t), t) }
        let y = try b.allocate(n, t)
        try b.synchronize()
        let before = b.pool.currentBytes
        b.pool.resetPeak()
        try b.linearCombination(xs, coefficients: [1, 2, 3], into: y, count: n, dtype: t)
        _ = try b.scaledErrorSquaredSum(
          error: xs[0], y0: xs[1], y1: xs[2], atol: 1, rtol: 1, count: n, dtype: t)
        let extra = b.pool.peakBytes - before
        XCTAssertLessThan(
          extra, n * t.size / 4,
          "\(b.name) [\(t)]: the solver primitives allocated \(extra) bytes of temporaries")
      }
    }
  }

  // MARK: maximum and NaN

  /// `maximum` is fmax on every backend: a NaN operand yields the other operand, two NaNs give NaN.
  /// Checked on the dense and the broadcasting paths.
  func testMaximumNaNSemantics() throws {
    let nan = Double.nan
    let inf = Double.infinity
    let a: [Double] = [nan, 1, nan, -inf, nan, 2, -3, inf]
    let b: [Double] = [1, nan, nan, nan, inf, 3, -4, nan]
    let expected: [Double] = [1, 1, nan, -inf, inf, 3, -3, inf]
    func same(_ x: [Double], _ y: [Double]) -> Bool {
      x.count == y.count && zip(x, y).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
    }
    var results: [String: [Double]] = [:]
    for (backend, types) in try backends() {
      for t in types {
        let n = a.count
        let (da, db) = (try upload(backend, a, t), try upload(backend, b, t))
        let dense = BroadcastLayout(
          shape: [1, 1, 1, n], aStrides: [0, 0, 0, 1], bStrides: [0, 0, 0, 1])
        let out = try poisoned(backend, n, t)
        try backend.binary(.maximum, da, db, out, layout: dense, dtype: t)
        let flat = try download(backend, out, n, t)
        XCTAssertTrue(
          same(flat, expected), "\(backend.name) [\(t)] dense maximum: \(flat) vs \(expected)")

        // a as a column [n, 1] against b as a row [1, n]: out[i, j] = fmax(a[i], b[j]).
        let grid = BroadcastLayout(
          shape: [1, 1, n, n], aStrides: [0, 0, 1, 0], bStrides: [0, 0, 0, 1])
        let outGrid = try poisoned(backend, n * n, t)
        try backend.binary(.maximum, da, db, outGrid, layout: grid, dtype: t)
        let got = try download(backend, outGrid, n * n, t)
        let want = a.flatMap { x in
          b.map { y in x.isNaN ? y : (y.isNaN ? x : max(x, y)) }
        }
        XCTAssertTrue(
          same(got, want), "\(backend.name) [\(t)] broadcast maximum: \(got) vs \(want)")
        results["\(t) \(backend.name)"] = flat + got
      }
    }
    // And the backends agree with each other element for element.
    for t in [DType.float32, .float64] {
      let runs = results.filter { $0.key.hasPrefix("\(t) ") }.map(\.value)
      for r in runs.dropFirst() {
        XCTAssertTrue(same(r, runs[0]), "[\(t)] backends disagree on maximum with NaN")
      }
    }
  }
}
