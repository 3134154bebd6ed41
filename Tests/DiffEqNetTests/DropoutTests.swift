import DiffEqNet
import NumericTestSupport
import XCTest

/// Dropout has no backend-free reference (its mask comes from a hash), so it is checked by the
/// properties that define it: y = x·mask with mask ∈ {0, 1/(1−p)}; a zeroed fraction ≈ p and hence
/// E[mask] = 1; the same mask for the same seed and a different one for another seed; and the same
/// mask on every backend and element type.
final class DropoutTests: XCTestCase {
  /// Large enough that 5 standard deviations of the kept fraction are below 0.6%.
  let n = 200_003

  /// The mask is dropout applied to ones.
  func mask(p: Double, seed: UInt32, dtype: DType, on backend: any Backend, count: Int? = nil)
    throws -> [Double]
  {
    let ones = try Tensor.ones([count ?? n], dtype: dtype, on: backend)
    try poisonPool(backend, dtype, counts: [count ?? n])
    return try ones.dropout(p: p, seed: seed).toDoubles()
  }

  func testMaskStatistics() throws {
    for backend in testBackends() {
      for dtype in dtypes(on: backend) {
        for (p, s) in [(0.1, UInt32(7)), (0.5, 1234), (0.8, 0xFFFF_FFFF)] {
          let what = "p \(p) seed \(s) on \(backend.name) \(dtype)"
          let m = try mask(p: p, seed: s, dtype: dtype, on: backend)
          let keep = dtype == .float32 ? Double(Float(1 / (1 - p))) : 1 / (1 - p)
          let zeros = m.filter { $0 == 0 }.count
          let kept = m.filter { $0 == keep }.count
          XCTAssertEqual(zeros + kept, n, "\(what): every mask value is 0 or 1/(1−p)")
          let sigma = (p * (1 - p) / Double(n)).squareRoot()
          let zeroFraction = Double(zeros) / Double(n)
          XCTAssertEqual(
            zeroFraction, p, accuracy: 5 * sigma, "\(what): zeroed fraction within 5σ of p")
          XCTAssertEqual(
            1 - zeroFraction, 1 - p, accuracy: 5 * sigma, "\(what): kept fraction within 5σ of 1−p")
          let mean = m.reduce(0, +) / Double(n)
          XCTAssertEqual(
            mean, 1, accuracy: 5 * sigma / (1 - p) + 1e-6,
            "\(what): mask mean within 5σ of 1 (inverted dropout keeps E[y] = x)")
          // No long runs: both halves of the mask drop at the same rate.
          let firstHalf = m[..<(n / 2)].filter { $0 == 0 }.count
          XCTAssertEqual(
            Double(firstHalf) / Double(n / 2), p, accuracy: 5 * sigma * 2.0.squareRoot(),
            "\(what): first half's zeroed fraction")
        }
      }
    }
  }

  func testOutputIsInputTimesMaskAndSameSeedGivesSameMask() throws {
    for backend in testBackends() {
      for dtype in dtypes(on: backend) {
        let what = "\(backend.name) \(dtype)"
        var rng = RandomState(seed: seed(what))
        let shape = [2, 3, 13, 16]
        let x = try rng.normal(shape).tensor(dtype, on: backend)
        let xs = try x.toDoubles()
        let p = 0.3
        let count = x.count
        try poisonPool(backend, dtype, counts: [count])
        let y = try x.dropout(p: p, seed: 99).toDoubles()
        let m = try mask(p: p, seed: 99, dtype: dtype, on: backend, count: count)
        XCTAssertEqual(
          try mask(p: p, seed: 99, dtype: dtype, on: backend, count: count), m,
          "\(what): same seed, same mask")
        let expected = zip(xs, m).map { $0 * $1 }
        XCTAssertLessThanOrEqual(
          relativeError(y, expected), forwardTolerance(dtype), "\(what): y = x·mask(seed)")
        let other = try mask(p: p, seed: 100, dtype: dtype, on: backend, count: count)
        let agree = zip(m, other).filter { $0 == $1 }.count
        // Independent masks agree on p² + (1−p)² = 58% of the elements, not all of them.
        XCTAssertLessThan(Double(agree) / Double(count), 0.7, "\(what): another seed, another mask")
      }
    }
  }

  func testMaskIdenticalAcrossBackendsAndTypes() throws {
    for (p, s) in [(0.25, UInt32(3)), (0.5, 0xDEAD_BEEF)] {
      let reference = try mask(p: p, seed: s, dtype: .float32, on: sharedCPU).map { $0 != 0 }
      for backend in testBackends() {
        for dtype in dtypes(on: backend) {
          let kept = try mask(p: p, seed: s, dtype: dtype, on: backend).map { $0 != 0 }
          XCTAssertTrue(
            kept == reference,
            "p \(p) seed \(s): \(backend.name) \(dtype) mask differs from cpu float32")
        }
      }
    }
  }

  func testZeroProbabilityIsTheIdentity() throws {
    for backend in testBackends() {
      var rng = RandomState(seed: 5)
      let x = try rng.normal([7, 13]).tensor(.float32, on: backend)
      XCTAssertEqual(try x.dropout(p: 0, seed: 1).toDoubles(), try x.toDoubles())
    }
  }
}
