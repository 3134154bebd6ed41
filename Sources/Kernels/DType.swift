/// The element type of a device buffer.
///
/// `float32` runs everywhere; `float64` runs on the CPU backend and on OpenCL devices that report
/// `cl_khr_fp64`, and is what the gradient checks use.
public enum DType: String, Sendable, CaseIterable, Codable {
  case float32
  case float64

  /// Bytes per element.
  public var size: Int { self == .float32 ? 4 : 8 }
}
