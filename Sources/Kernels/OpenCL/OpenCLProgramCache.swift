import Foundation

/// Compiled OpenCL programs kept on disk between processes, as CLBlast and PyTorch keep theirs:
/// a driver compiles each of our programs in every process otherwise, which costs seconds.
///
/// A binary is keyed by the device (platform, name, vendor, version, driver version), the
/// source and the build options, so an updated driver or an edited kernel misses the cache. A
/// binary that cannot be read, is over `maxBytes`, or that the driver rejects is compiled from
/// source instead; a failure to store one is ignored (the cache only saves time). Writes are
/// atomic (`Data.WritingOptions.atomic`: a temporary file renamed into place), so concurrent
/// processes never read half a file.
public struct OpenCLProgramCache: Sendable, Equatable {
  /// The folder holding the binaries (created on first store).
  public var directory: URL

  /// The largest binary read or written.
  static let maxBytes = 64 << 20

  public init(directory: URL) { self.directory = directory }

  /// The file name for a program: 64-bit FNV-1a of everything that determines the binary.
  func key(device: OpenCLDevice, source: String, options: String) -> String {
    let hash = fnv1a([
      device.platformName, device.name, device.vendor, device.version, device.driverVersion,
      options, source,
    ])
    return String(hash, radix: 16) + ".clbin"
  }

  func load(_ key: String) -> [UInt8]? {
    let url = directory.appendingPathComponent(key)
    guard let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .fileSizeKey]),
      values.isRegularFile == true, let size = values.fileSize, size > 0, size <= Self.maxBytes,
      let data = try? Data(contentsOf: url)
    else { return nil }
    return [UInt8](data)
  }

  func store(_ binary: [UInt8], key: String) {
    guard binary.count <= Self.maxBytes else { return }
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try? Data(binary).write(to: directory.appendingPathComponent(key), options: .atomic)
  }
}

/// 64-bit FNV-1a over the parts, each followed by a zero byte (so that ["ab", "c"] and ["a", "bc"]
/// differ): the file names of the program cache and the tuning store.
func fnv1a(_ parts: [String]) -> UInt64 {
  var hash: UInt64 = 0xcbf2_9ce4_8422_2325
  for part in parts {
    for byte in part.utf8 + [0] {
      hash ^= UInt64(byte)
      hash &*= 0x100_0000_01b3
    }
  }
  return hash
}
