import Foundation
import XCTest

/// What a test run must have rather than skip without, named in `DIFFEQNET_REQUIRE`
/// (comma-separated). `.ci/run` requires all of them, so a CI machine that lost PoCL, Python's
/// safetensors or the built `runner` fails instead of passing with tests quietly skipped.
public enum TestRequirement: String, CaseIterable, Sendable {
  /// At least one OpenCL device (PoCL on a machine without a GPU).
  case opencl
  /// Python 3 with `safetensors` and `numpy`, for the checkpoint cross-checks.
  case python
  /// The release `runner` binary, for the CLI tests.
  case runner

  /// Whether this run was told it must have `self`.
  public var isRequired: Bool {
    let list = ProcessInfo.processInfo.environment["DIFFEQNET_REQUIRE"] ?? ""
    return list.split(separator: ",").contains { $0 == rawValue || $0 == "all" }
  }
}

/// The error to throw when `requirement` is missing: an `XCTSkip` normally, a failure when the
/// run requires it.
public func missing(_ requirement: TestRequirement, _ reason: String) -> Error {
  guard requirement.isRequired else { return XCTSkip(reason) }
  XCTFail("DIFFEQNET_REQUIRE names \(requirement.rawValue), but \(reason)")
  return RequirementMissing(reason: reason)
}

/// Thrown (after recording a failure) when a required resource is missing.
public struct RequirementMissing: Error, CustomStringConvertible {
  public let reason: String
  public init(reason: String) { self.reason = reason }
  public var description: String { "required but missing: \(reason)" }
}
