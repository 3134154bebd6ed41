import Foundation
import Kernels
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
}
