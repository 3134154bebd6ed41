import Foundation
import Kernels
import NumericTestSupport
import XCTest

/// SplitMix64: small, seedable and the same on every platform.
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// What the backend-primitive tests share: seeded inputs rounded to the element type (so the
/// float64 reference sees exactly what the backend sees), transfers, NaN-poisoned outputs (so an
/// unwritten element fails), and the error measure ‖out − ref‖ / ‖ref‖ with its tolerance.
protocol KernelTestCase: XCTestCase {
  var rng: SplitMix64 { get set }
}

extension KernelTestCase {
  /// A different but fixed stream per test.
  func seedForTestName() -> SplitMix64 {
    SplitMix64(seed: UInt64(truncatingIfNeeded: name.utf8.reduce(5381) { $0 &* 33 &+ Int($1) }))
  }

  func random(_ n: Int, _ range: ClosedRange<Double>, _ t: DType) -> [Double] {
    (0..<n).map { _ in rounded(Double.random(in: range, using: &rng), t) }
  }

  func rounded(_ v: Double, _ t: DType) -> Double { t == .float32 ? Double(Float(v)) : v }

  func upload(_ b: any Backend, _ v: [Double], _ t: DType) throws -> DeviceBuffer {
    let buf = try b.allocate(v.count, t)
    switch t {
    case .float32: try v.map { Float($0) }.withUnsafeBytes { try b.write($0, to: buf) }
    case .float64: try v.withUnsafeBytes { try b.write($0, to: buf) }
    }
    return buf
  }

  func download(_ b: any Backend, _ buf: DeviceBuffer, _ n: Int, _ t: DType) throws -> [Double] {
    switch t {
    case .float32:
      var f = [Float](repeating: 0, count: n)
      try f.withUnsafeMutableBytes { try b.read(buf, into: $0) }
      return f.map(Double.init)
    case .float64:
      var d = [Double](repeating: 0, count: n)
      try d.withUnsafeMutableBytes { try b.read(buf, into: $0) }
      return d
    }
  }

  /// A buffer of `n` NaNs, written from the host (so poisoning relies on no kernel under test).
  func poisoned(_ b: any Backend, _ n: Int, _ t: DType) throws -> DeviceBuffer {
    try upload(b, [Double](repeating: .nan, count: n), t)
  }

  func tolerance(_ t: DType) -> Double { t == .float32 ? 1e-5 : 1e-12 }

  func assertClose(
    _ out: [Double], _ ref: [Double], _ t: DType, _ what: @autoclosure () -> String,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(out.count, ref.count, what(), file: file, line: line)
    let err = relativeError(out, ref)
    let tol = tolerance(t)
    // NaN (an unwritten element) compares false and fails.
    XCTAssertTrue(
      err <= tol, "\(what()) [\(t)]: relative error \(err) exceeds \(tol) (‖out − ref‖/‖ref‖)",
      file: file, line: line)
  }
}
