import Foundation
import Kernels
import NumericTestSupport
import XCTest

/// `OpenCLTuningStore`: a record round-trips and is used by a backend on the device it describes;
/// a forced tiling wins over it; a record that cannot be used is an error naming its file.
final class OpenCLTuningStoreTests: XCTestCase {
  func device() throws -> OpenCLDevice {
    let devices = OpenCLBackend.devices()
    guard devices.indices.contains(OpenCLBackendTests.deviceIndex) else {
      throw missing(.opencl, "no OpenCL platform or device")
    }
    return devices[OpenCLBackendTests.deviceIndex]
  }

  func temporaryStore() throws -> OpenCLTuningStore {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "tuning-\(UUID().uuidString)", isDirectory: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return OpenCLTuningStore(directory: url)
  }

  func testARecordIsKeptPerDeviceAndUsedByTheBackend() throws {
    let info = try device()
    let store = try temporaryStore()
    XCTAssertNil(try store.record(for: info))
    // Not the default choice, so that its use shows.
    let tuned = OpenCLBackend.GEMMTiling(ts: 16, wpt: 2, tsk: 8)
    try store.store(.init(device: info, tiling: tuned), for: info)
    XCTAssertEqual(try store.record(for: info)?.tiling, tuned)

    var other = info
    other.driverVersion += "-updated"
    XCTAssertNotEqual(store.url(for: other), store.url(for: info))
    XCTAssertNil(try store.record(for: other), "a new driver must miss the store")

    let index = OpenCLBackendTests.deviceIndex
    let backend = try OpenCLBackend(
      deviceIndex: index, options: .init(blasOnCPUDevice: false, tuning: store))
    let (tiling, origin) = try backend.gemmTiling(for: .float32)
    XCTAssertEqual(tiling, tuned)
    XCTAssertEqual(origin, .tuned)

    let forcedTiling = OpenCLBackend.GEMMTiling(ts: 8, wpt: 2, tsk: 8)
    let forced = try OpenCLBackend(
      deviceIndex: index,
      options: .init(blasOnCPUDevice: false, gemmTiling: forcedTiling, tuning: store))
    XCTAssertEqual(try forced.gemmTiling(for: .float32).tiling, forcedTiling)
    XCTAssertEqual(try forced.gemmTiling(for: .float32).origin, .forced)

    let plain = try OpenCLBackend(deviceIndex: index, options: .init(blasOnCPUDevice: false))
    XCTAssertEqual(try plain.gemmTiling(for: .float32).origin, .largestThatFits)
  }

  func testAnUnusableRecordIsAnErrorNamingItsFile() throws {
    let info = try device()
    let store = try temporaryStore()
    try store.store(.init(device: info, tiling: .init(ts: 16, wpt: 2, tsk: 8)), for: info)
    let url = store.url(for: info)
    let good = try String(contentsOf: url, encoding: .utf8)
    var otherDevice = info
    otherDevice.name = "another device"
    let otherRecord = try JSONEncoder().encode(
      OpenCLTuningStore.Record(device: otherDevice, tiling: .init(ts: 16, wpt: 2, tsk: 8)))
    let cases: [(Data, String)] = [
      (Data("{".utf8), "cannot be read"),
      (Data(), "cannot be read"),
      (
        Data(good.replacingOccurrences(of: "\"ts\" : 16", with: "\"ts\" : 1099511627776").utf8),
        "invalid tiling"
      ),
      (
        Data(good.replacingOccurrences(of: "\"wpt\" : 2", with: "\"wpt\" : 3").utf8),
        "invalid tiling"
      ),
      (
        Data(good.replacingOccurrences(of: "\"tsk\" : 8", with: "\"tsk\" : \"8\"").utf8),
        "cannot be read"
      ),
      (otherRecord, "another device"),
      (Data(repeating: 0x20, count: 2 << 20), "is over"),
    ]
    for (bytes, message) in cases {
      try bytes.write(to: url)
      XCTAssertThrowsError(try store.record(for: info), message) { error in
        let text = "\(error)"
        XCTAssertTrue(text.contains(message) && text.contains(url.path), text)
      }
      XCTAssertThrowsError(
        try OpenCLBackend(
          deviceIndex: OpenCLBackendTests.deviceIndex, options: .init(tuning: store)), message)
    }
  }
}
