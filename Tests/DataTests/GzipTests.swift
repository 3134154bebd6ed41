import DiffEqNet
import Foundation
import XCTest

/// gzip through zlib, checked against the `gzip` program where one is installed.
final class GzipTests: XCTestCase {
  func testRoundTrip() throws {
    for n in [0, 1, 1000, 300_000] {
      let data = testPixels(n, seed: UInt64(n)).map { $0 & 0x0f }  // compressible
      let gz = try Gzip.compress(data)
      XCTAssertTrue(Gzip.isCompressed(gz))
      XCTAssertEqual(try Gzip.decompress(gz), data, "\(n) bytes")
    }
    let level0 = try Gzip.compress([1, 2, 3], level: 0)
    XCTAssertEqual(try Gzip.decompress(level0), [1, 2, 3])
  }

  func testConcatenatedMembersAreOneStream() throws {
    let gz = try Gzip.compress([1, 2, 3]) + Gzip.compress([4, 5])
    XCTAssertEqual(try Gzip.decompress(gz), [1, 2, 3, 4, 5])
  }

  func testRejectsBadInput() throws {
    let gz = try Gzip.compress(testPixels(10_000, seed: 1))
    XCTAssertThrowsError(try Gzip.decompress([1, 2, 3, 4])) { XCTAssertTrue($0 is GzipError) }
    XCTAssertThrowsError(try Gzip.decompress([0x1f, 0x8b])) { XCTAssertTrue($0 is GzipError) }
    XCTAssertThrowsError(try Gzip.decompress(gz + [0x00, 0x01, 0x02])) {
      XCTAssertTrue("\($0)".contains("trailing garbage"), "\($0)")
    }
    for cut in [3, 10, gz.count / 2, gz.count - 1] {
      XCTAssertThrowsError(try Gzip.decompress(Array(gz.prefix(cut))), "cut at \(cut)") {
        XCTAssertTrue($0 is GzipError)
      }
    }
    // The CRC-32 in the trailer catches damage the deflate decoder does not.
    var badCRC = gz
    badCRC[gz.count - 6] ^= 1
    XCTAssertThrowsError(try Gzip.decompress(badCRC)) { XCTAssertTrue($0 is GzipError) }
    // A bomb is stopped at the limit.
    let zeros = try Gzip.compress([UInt8](repeating: 0, count: 1 << 20))
    XCTAssertThrowsError(try Gzip.decompress(zeros, limit: 1 << 16)) {
      XCTAssertTrue("\($0)".contains("limit"), "\($0)")
    }
    XCTAssertThrowsError(try Gzip.compress([1], level: 10))
  }

  func testRandomGarbageWithGzipMagicNeverCrashes() {
    var rng = RandomState(seed: 42)
    for i in 0..<300 {
      let n = Int(rng.next() % 200)
      let body = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
      // Half keep a valid deflate header so decoding gets further.
      let head: [UInt8] = i % 2 == 0 ? [0x1f, 0x8b] : [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]
      _ = try? Gzip.decompress(head + body)
    }
  }

  func testInteroperatesWithTheGzipProgram() throws {
    let gzip = ["/bin/gzip", "/usr/bin/gzip"].first {
      FileManager.default.isExecutableFile(atPath: $0)
    }
    guard let gzip else { throw XCTSkip("no gzip program") }
    let directory = try makeTemporaryDirectory()
    let data = testPixels(50_000, seed: 9).map { $0 % 7 }
    // Ours → gzip -d.
    let ours = directory.appendingPathComponent("ours.gz")
    try write(try Gzip.compress(data), to: ours)
    XCTAssertEqual(try run(gzip, ["-dc", ours.path]), data)
    // gzip → ours.
    let plain = directory.appendingPathComponent("plain")
    try write(data, to: plain)
    XCTAssertEqual(try Gzip.decompress(run(gzip, ["-9c", plain.path])), data)
  }

  private func run(_ program: String, _ arguments: [String]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0)
    return [UInt8](output)
  }
}
