/// What a backend has asked of its device: kernel launches, host synchronisations and the bytes
/// moved each way, counted since the backend was created. Subtract two readings to cost a piece
/// of work; the counts depend only on the work and the backend's options (work-group sizes and
/// timing do not change them), so they are the same on every OpenCL device.
public struct DeviceTraffic: Sendable, Equatable {
  /// Kernels enqueued.
  public var launches = 0
  /// Calls that made the host wait for the device: blocking reads and maps, finishes. Writes
  /// do not wait (OpenCL stages a copy), unless the copies in flight pass their limit.
  public var hostSynchronizations = 0
  public var bytesToDevice = 0
  public var bytesFromDevice = 0

  public init() {}

  /// The traffic between an earlier reading and this one.
  public static func - (later: DeviceTraffic, earlier: DeviceTraffic) -> DeviceTraffic {
    var d = DeviceTraffic()
    d.launches = later.launches - earlier.launches
    d.hostSynchronizations = later.hostSynchronizations - earlier.hostSynchronizations
    d.bytesToDevice = later.bytesToDevice - earlier.bytesToDevice
    d.bytesFromDevice = later.bytesFromDevice - earlier.bytesFromDevice
    return d
  }
}
