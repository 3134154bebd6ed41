import Foundation
import Kernels
import NumericTestSupport
import XCTest

/// `Backend.view` and `Backend.pack` on the CPU and on each OpenCL device: a view aliases its
/// range both ways, and packing is an exact copy into the given ranges that leaves the rest of
/// the destination alone. Both are data movement, so the comparisons are exact.
final class BufferViewTests: XCTestCase, KernelTestCase {
  var rng = SplitMix64(seed: 0)

  override func setUp() {
    super.setUp()
    rng = seedForTestName()
  }

  func backends() throws -> [any Backend] {
    let cpu: any Backend = CPUBackend()
    if OpenCLBackend.devices().isEmpty {
      if TestRequirement.opencl.isRequired {
        throw missing(.opencl, "no OpenCL platform or device")
      }
      return [cpu]
    }
    return [cpu, try OpenCLBackendTests.kernelBackend.get()]
  }

  func dtypes(_ b: any Backend) -> [DType] { DType.allCases.filter { b.supports($0) } }

  func testViewsAliasTheirRangeBothWays() throws {
    for b in try backends() {
      for t in dtypes(b) {
        let align = b.viewAlignment / t.size
        let n = 3 * align + 17
        let values = random(n, -1...1, t)
        let parent = try upload(b, values, t)
        let (offset, count) = (align, align + 5)
        let view = try b.view(of: parent, offset: offset, count: count, dtype: t)
        XCTAssertTrue(view.viewedBuffer === parent)
        XCTAssertEqual(
          try download(b, view, count, t), Array(values[offset..<offset + count]), "\(b.name) \(t)")
        // A kernel writing the view changes exactly that range of the parent.
        try b.affine(view, view, scale: 2, shift: 1, count: count, dtype: t)
        var expected = values
        for i in offset..<offset + count { expected[i] = rounded(2 * values[i] + 1, t) }
        XCTAssertEqual(try download(b, parent, n, t), expected, "\(b.name) \(t)")
        // A write to the parent is read through the view.
        let fresh = random(n, -1...1, t)
        switch t {
        case .float32: try fresh.map(Float.init).withUnsafeBytes { try b.write($0, to: parent) }
        case .float64: try fresh.withUnsafeBytes { try b.write($0, to: parent) }
        }
        XCTAssertEqual(
          try download(b, view, count, t), Array(fresh[offset..<offset + count]), "\(b.name) \(t)")
      }
    }
  }

  func testBadViewsAreClearErrors() throws {
    for b in try backends() {
      let t = DType.float32
      let align = b.viewAlignment / t.size
      let parent = try b.allocate(4 * align, t)
      let view = try b.view(of: parent, offset: 0, count: align, dtype: t)
      let bad: [(String, () throws -> DeviceBuffer)] = [
        ("past the end", { try b.view(of: parent, offset: 3 * align, count: 2 * align, dtype: t) }),
        ("negative", { try b.view(of: parent, offset: -align, count: 1, dtype: t) }),
        ("view of a view", { try b.view(of: view, offset: 0, count: 1, dtype: t) }),
      ]
      var cases = bad
      if align > 1 {
        cases.append(("misaligned", { try b.view(of: parent, offset: 1, count: 1, dtype: t) }))
      }
      for (label, make) in cases {
        XCTAssertThrowsError(try make(), "\(label) on \(b.name)") { error in
          guard case BackendError.invalidView = error else {
            return XCTFail("\(label) on \(b.name): \(error)")
          }
        }
      }
    }
  }

  /// 37 sources of sizes 0 to 300 at ascending offsets with gaps: three launches of the 16-slot
  /// kernel on OpenCL, every range exact, every gap still the sentinel.
  func testPackCopiesEachRangeAndLeavesTheGaps() throws {
    for b in try backends() {
      for t in dtypes(b) {
        var counts: [Int] = []
        var offsets: [Int] = []
        var end = 0
        for k in 0..<37 {
          let n = k == 5 ? 0 : Int.random(in: 1...300, using: &rng)
          let gap = k % 4 == 0 ? 0 : Int.random(in: 1...40, using: &rng)
          offsets.append(end + gap)
          counts.append(n)
          end += gap + n
        }
        let sources = counts.map { random($0, -10...10, t) }
        let buffers = try sources.map { try upload(b, $0.isEmpty ? [0] : $0, t) }
        let sentinel = -12345.0
        let y = try upload(b, [Double](repeating: sentinel, count: end + 3), t)
        var expected = [Double](repeating: sentinel, count: end + 3)
        for k in sources.indices {
          for i in 0..<counts[k] { expected[offsets[k] + i] = sources[k][i] }
        }
        let before = b.traffic.launches
        try b.pack(buffers, counts: counts, offsets: offsets, into: y, dtype: t)
        if b is OpenCLBackend {
          XCTAssertEqual(b.traffic.launches - before, 3, "\(b.name): launches")
        }
        XCTAssertEqual(try download(b, y, end + 3, t), expected, "\(b.name) \(t)")
      }
    }
  }

  func testOverlappingOrOversizedPackRangesAreErrors() throws {
    for b in try backends() {
      let t = DType.float32
      // Sizes that the pool does not round up: 256 and 1024 bytes.
      let x = try b.allocate(64, t)
      let y = try b.allocate(256, t)
      for (counts, offsets) in [
        ([10, 10], [0, 5]), ([10], [250]), ([65], [0]), ([5, 5], [20, 0]),
      ] {
        XCTAssertThrowsError(
          try b.pack(
            counts.map { _ in x }, counts: counts, offsets: offsets, into: y, dtype: t),
          "\(counts) at \(offsets) on \(b.name)")
      }
    }
  }
}
