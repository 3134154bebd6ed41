import COpenBLASCore
import Foundation
import Kernels
import XCTest

/// OpenBLAS's kernel set after the CPU backend starts (`OpenBLASCore`). That the swapped kernels
/// compute correct products is `testGEMMOnCPUBackend`'s part: it runs in this process after
/// the swap.
final class OpenBLASCoreTests: XCTestCase {
  /// On a CPU with AVX2 and FMA the backend never keeps one of OpenBLAS's pre-AVX2 fallbacks,
  /// which a library older than the CPU picks (Debian 12's OpenBLAS on Emerald Rapids: Prescott,
  /// at a fifth of the rate). An explicit OPENBLAS_CORETYPE is the user's choice and is left
  /// alone, so the check does not apply then.
  func testCPUBackendRunsAnAVX2KernelSetWhereTheCPUHasOne() throws {
    let backend = CPUBackend()
    try XCTSkipIf(
      ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] != nil,
      "OPENBLAS_CORETYPE is set: the user's choice stands")
    try XCTSkipUnless(backend.usesWinograd, "this CPU has no AVX2 and FMA")
    let preAVX2 = ["prescott", "core2", "penryn", "dunnington", "nehalem", "sandybridge"]
    XCTAssertFalse(
      preAVX2.contains(OpenBLASCore.name.lowercased()),
      "OpenBLAS runs its \(OpenBLASCore.name) kernels on a CPU with AVX2 and FMA")
    XCTAssertTrue(backend.name.contains(OpenBLASCore.name), backend.name)
  }

  /// The decision itself: the pre-AVX2 sets are replaced, whatever their case; the sets of
  /// AVX2-era and later CPUs, Intel's and AMD's, are kept.
  func testOnlyPreAVX2KernelSetsAreReplaced() throws {
    #if arch(x86_64)
      for old in [
        "Prescott", "PRESCOTT", "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge",
      ] {
        XCTAssertEqual(diffeqnet_openblas_core_predates_avx2(old), 1, old)
      }
      for new in ["Haswell", "SkylakeX", "Cooperlake", "SapphireRapids", "Zen", "Excavator", ""] {
        XCTAssertEqual(diffeqnet_openblas_core_predates_avx2(new), 0, new)
      }
    #else
      throw XCTSkip("OpenBLAS's kernel sets are repaired on x86-64 only")
    #endif
  }
}
