import CBLAS
import COpenBLASCore

/// The kernel set OpenBLAS runs on this CPU, chosen once per process.
///
/// OpenBLAS picks its kernels when it loads; a release older than the CPU falls back to SSE3
/// kernels several times slower than the AVX2 or AVX-512 ones the CPU runs (see
/// `COpenBLASCore.h`). Every path that calls BLAS reads `OpenBLASCore.name` first, so the repair
/// happens before the first BLAS call, on one thread (a `static let` is initialised once, under a
/// lock).
public enum OpenBLASCore {
  /// OpenBLAS's name for its kernel set (e.g. "SkylakeX"), after the repair.
  public static let name: String = {
    _ = diffeqnet_openblas_select_native_core()
    return String(cString: openblas_get_corename())
  }()
}
