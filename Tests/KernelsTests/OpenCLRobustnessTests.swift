import Foundation
import Kernels
import NumericTestSupport
import XCTest

/// What a real driver can do to the OpenCL backend, checked on PoCL: work past the kernels'
/// 32-bit indices is a clear error, never a wrapped id; an asynchronous fault the driver reports
/// through the context's callback reaches the next error; compiled programs are kept on disk and
/// reused, and a damaged cache file is compiled over.
final class OpenCLRobustnessTests: XCTestCase {
  func deviceIndex() throws -> Int {
    guard let first = OpenCLBackend.devices().first else {
      throw missing(.opencl, "no OpenCL device")
    }
    return first.index
  }

  /// A range just below 2³¹ rounds up past it in whole work-groups (its ids would wrap as int);
  /// a count past 2³¹ does not fit the kernels' int arguments. Both throw before anything runs.
  func testWorkBeyondThirtyTwoBitIndicesIsAnError() throws {
    let b = try OpenCLBackend(deviceIndex: try deviceIndex())
    let small = try b.allocate(16, .float32)
    for count in [Int(Int32.max) - 10, Int(Int32.max) + 5] {
      XCTAssertThrowsError(try b.fill(small, value: 1, count: count, dtype: .float32)) {
        guard case BackendError.indexRangeExceeded(let kernel, _) = $0 else {
          return XCTFail("\(count): \($0)")
        }
        XCTAssertEqual(kernel, "fill")
        XCTAssertTrue("\($0)".contains("32-bit index range"), "\($0)")
      }
    }
    try b.fill(small, value: 2, count: 16, dtype: .float32)  // still usable
    var v = [Float](repeating: 0, count: 16)
    try v.withUnsafeMutableBytes { try b.read(small, into: $0) }
    XCTAssertEqual(v, [Float](repeating: 2, count: 16))
  }

  /// The callback records what the driver says; the next failing call carries it, once.
  func testDriverMessagesReachTheNextError() throws {
    let messages = DriverMessages()
    let user = Unmanaged.passUnretained(messages).toOpaque()
    "CL_OUT_OF_RESOURCES error executing CL_COMMAND_NDRANGE_KERNEL".withCString {
      DriverMessages.notify($0, nil, 0, user)
    }
    XCTAssertEqual(
      messages.drain(), ["CL_OUT_OF_RESOURCES error executing CL_COMMAND_NDRANGE_KERNEL"])
    XCTAssertEqual(messages.drain(), [])
    for i in 0..<20 { messages.record("message \(i)") }
    XCTAssertEqual(messages.drain().count, 8, "a repeating driver must not grow memory")

    let b = try OpenCLBackend(deviceIndex: try deviceIndex())
    XCTAssertNoThrow(try b.checkReporting(0, "clFinish"))
    XCTAssertThrowsError(try b.checkReporting(-5, "clFinish")) {
      XCTAssertEqual("\($0)", "OpenCL call clFinish failed with error -5")
    }
  }

  /// A second backend on the same cache folder loads every program the first compiled, and
  /// computes the same; a damaged binary is compiled over and stored again.
  func testCompiledProgramsAreCachedAndReused() throws {
    let index = try deviceIndex()
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("diffeqnet-program-cache-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: folder) }
    let options = OpenCLBackend.Options(
      blasOnCPUDevice: false, programCache: OpenCLProgramCache(directory: folder))

    func run(_ b: OpenCLBackend) throws -> [Float] {
      let x = try b.allocate(1000, .float32)
      try b.fill(x, value: 0.5, count: 1000, dtype: .float32)
      let y = try b.allocate(1000, .float32)
      try b.unary(.tanh, x, y, count: 1000, dtype: .float32)
      var v = [Float](repeating: 0, count: 1000)
      try v.withUnsafeMutableBytes { try b.read(y, into: $0) }
      return v
    }
    let first = try OpenCLBackend(deviceIndex: index, options: options)
    let expected = try run(first)
    XCTAssertEqual(first.programsLoadedFromCache, 0)
    let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
      .filter { $0.hasSuffix(".clbin") }
    XCTAssertEqual(files.count, 1, "one program (elementwise) stored: \(files)")

    let second = try OpenCLBackend(deviceIndex: index, options: options)
    XCTAssertEqual(try run(second), expected)
    XCTAssertEqual(second.programsLoadedFromCache, 1)

    for file in files {
      try Data("not a binary".utf8).write(to: folder.appendingPathComponent(file))
    }
    let third = try OpenCLBackend(deviceIndex: index, options: options)
    XCTAssertEqual(try run(third), expected)
    XCTAssertEqual(third.programsLoadedFromCache, 0, "the damaged binary is compiled over")
    let restored = try Data(contentsOf: folder.appendingPathComponent(files[0]))
    XCTAssertGreaterThan(restored.count, 100, "and stored again")
  }
}
