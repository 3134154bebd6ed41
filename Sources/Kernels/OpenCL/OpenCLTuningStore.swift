import Foundation

/// GEMM tilings measured by `runner tune`, one file per device, as CLBlast keeps its tuning
/// database: the fastest tiling depends on the device and its driver, and only a sweep on the
/// device itself finds it.
///
/// A record is keyed by the device's platform, name, vendor, version and driver version, so an
/// updated driver misses the store and falls back to the default choice until it is tuned again.
/// A record that exists but cannot be used (unreadable, malformed, oversized, for another device,
/// or with a tiling the kernels reject) is an error naming the file, not silently ignored: it
/// would otherwise hide a tuning the user asked for. Writes are atomic.
public struct OpenCLTuningStore: Sendable, Equatable {
  /// The folder holding the records (created on first store).
  public var directory: URL

  /// The largest record read.
  static let maxBytes = 1 << 20

  public init(directory: URL) { self.directory = directory }

  /// What `runner tune` found for one device.
  public struct Record: Codable, Sendable, Equatable {
    public var platform: String
    public var device: String
    public var vendor: String
    public var version: String
    public var driverVersion: String
    /// The fastest tiling of the sweep.
    public var tiling: OpenCLBackend.GEMMTiling
    /// When the sweep ran (ISO 8601).
    public var date: String

    public init(device: OpenCLDevice, tiling: OpenCLBackend.GEMMTiling, date: Date = Date()) {
      platform = device.platformName
      self.device = device.name
      vendor = device.vendor
      version = device.version
      driverVersion = device.driverVersion
      self.tiling = tiling
      self.date = ISO8601DateFormatter().string(from: date)
    }

    /// Whether the record was measured on `device` with its present driver.
    func describes(_ device: OpenCLDevice) -> Bool {
      platform == device.platformName && self.device == device.name && vendor == device.vendor
        && version == device.version && driverVersion == device.driverVersion
    }
  }

  /// The file holding `device`'s record.
  public func url(for device: OpenCLDevice) -> URL {
    let hash = fnv1a([
      device.platformName, device.name, device.vendor, device.version, device.driverVersion,
    ])
    return directory.appendingPathComponent("gemm-" + String(hash, radix: 16) + ".json")
  }

  /// `device`'s record, or nil when it has none; throws `BackendError.invalidOption` naming the
  /// file when one exists but cannot be used.
  public func record(for device: OpenCLDevice) throws -> Record? {
    let url = url(for: device)
    guard FileManager.default.fileExists(atPath: url.path) else { return nil }
    func unusable(_ reason: String) -> BackendError {
      .invalidOption(
        "the GEMM tuning in \(url.path) \(reason); run `runner tune` again or delete the file")
    }
    let size = (try? url.resourceValues(forKeys: [.fileSizeKey]))?.fileSize ?? 0
    guard size <= Self.maxBytes else { throw unusable("is over \(Self.maxBytes) bytes") }
    let record: Record
    do {
      record = try JSONDecoder().decode(Record.self, from: try Data(contentsOf: url))
    } catch {
      throw unusable("cannot be read (\(error))")
    }
    guard record.describes(device) else { throw unusable("was measured on another device") }
    do { try record.tiling.validate() } catch { throw unusable("holds an invalid tiling") }
    return record
  }

  /// Writes `record` atomically, replacing any earlier record for the same device.
  public func store(_ record: Record, for device: OpenCLDevice) throws {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(record).write(to: url(for: device), options: .atomic)
  }
}
