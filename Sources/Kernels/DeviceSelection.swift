import Foundation

/// Which backend to compute on, as given on the command line (`--device`).
public enum DeviceSpec: Equatable, Sendable, CustomStringConvertible {
  /// The first OpenCL GPU or accelerator, else the CPU backend.
  case auto
  /// The CPU backend (OpenBLAS and Swift loops), not an OpenCL CPU device.
  case cpu
  /// OpenCL device N of `OpenCLBackend.devices()` (nil: the first).
  case opencl(Int?)

  /// Parses `auto`, `cpu`, `opencl` or `opencl:N` (N ≥ 0), case-insensitively.
  public init(parsing text: String) throws {
    let s = text.trimmingCharacters(in: .whitespaces).lowercased()
    switch s {
    case "auto": self = .auto
    case "cpu": self = .cpu
    case "opencl": self = .opencl(nil)
    default:
      if s.hasPrefix("opencl:"), let n = Int(s.dropFirst("opencl:".count)), n >= 0 {
        self = .opencl(n)
      } else {
        throw BackendError.noSuchDevice(
          "'\(text)' (expected auto, cpu, opencl or opencl:N with N ≥ 0)")
      }
    }
  }

  public var description: String {
    switch self {
    case .auto: return "auto"
    case .cpu: return "cpu"
    case .opencl(nil): return "opencl"
    case .opencl(let n?): return "opencl:\(n)"
    }
  }
}

/// Settings spell a device as `init(parsing:)` reads it and `description` writes it.
extension DeviceSpec: SpelledSetting {}

/// The backend `spec` names.
///
/// - `auto`: the first OpenCL device of type GPU or accelerator, else `CPUBackend()` (an OpenCL
///   CPU device such as PoCL is not chosen: the CPU backend is faster on the same cores). An error
///   opening the chosen GPU is thrown rather than silently falling back.
/// - `cpu`: `CPUBackend()`.
/// - `opencl(n)`: OpenCL device n (default 0); `BackendError.noOpenCLPlatform` if OpenCL has no
///   platform, `noSuchDevice` if n is out of range.
///
/// `openCL` configures whichever OpenCL backend is opened.
public func makeBackend(_ spec: DeviceSpec, openCL: OpenCLBackend.Options = .init()) throws
  -> any Backend
{
  switch spec {
  case .cpu:
    return CPUBackend()
  case .auto:
    if let gpu = OpenCLBackend.devices().first(where: { $0.type == .gpu || $0.type == .accelerator }
    ) {
      return try OpenCLBackend(deviceIndex: gpu.index, options: openCL)
    }
    return CPUBackend()
  case .opencl(let n):
    // Throws noOpenCLPlatform when there is no platform, noSuchDevice when n is out of range.
    return try OpenCLBackend(deviceIndex: n ?? 0, options: openCL)
  }
}
