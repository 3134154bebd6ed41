import Foundation
import Kernels
import NumericTestSupport
import XCTest

/// `Sources/Kernels/KernelSources.swift` is generated from `kernels/*.cl`; this fails when it is
/// stale, so the built binary always runs the kernels that are in the repository.
final class KernelSourcesTests: XCTestCase {
  func testEmbeddedSourcesMatchKernelFiles() throws {
    let root = URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent()  // KernelsTests
      .deletingLastPathComponent()  // Tests
      .deletingLastPathComponent()  // package root
    let dir = root.appendingPathComponent("kernels")
    let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
      .filter { $0.hasSuffix(".cl") }.sorted()
    guard !names.isEmpty else {
      throw XCTSkip("kernels/*.cl not found next to the tests (\(dir.path)); sources not checked")
    }
    let hint = "KernelSources.swift is stale: run scripts/embed-kernels.sh"
    var files: [String: String] = [:]
    for n in names {
      files[String(n.dropLast(3))] = try String(
        contentsOf: dir.appendingPathComponent(n), encoding: .utf8)
    }
    XCTAssertEqual(Set(KernelSources.all.keys), Set(files.keys), hint)
    for (key, text) in files {
      XCTAssertTrue(KernelSources.all[key] == text, "\(key).cl differs. \(hint)")
    }
  }

  /// Launches find their kernels through `OpenCLKernel`'s table: each program's kernels, as the
  /// compiler lists them, must be exactly the cases that name it, or a launch would stop on a
  /// missing kernel.
  func testKernelTableNamesEveryKernelOfEveryProgram() throws {
    if OpenCLBackend.devices().isEmpty { throw missing(.opencl, "no OpenCL platform or device") }
    let backend = try OpenCLBackend()
    let prelude = try XCTUnwrap(KernelSources.all["prelude"])
    XCTAssertEqual(
      Set(ProgramName.allCases.map(\.fileName)),
      Set(KernelSources.all.keys).subtracting(["prelude"]))
    for program in ProgramName.allCases {
      let body = try XCTUnwrap(KernelSources.all[program.fileName])
      let compiled = try backend.buildProgram(
        source: prelude + body, name: "kernel-table-\(program.fileName)",
        options: "-cl-std=CL1.2 -D T=float")
      XCTAssertEqual(
        Set(compiled), Set(OpenCLKernel.of(program).map(\.name)), "program \(program.fileName)")
    }
  }
}
