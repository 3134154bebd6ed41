import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// Files exchanged with Hugging Face's Python `safetensors`, when it is installed (skipped
/// otherwise: nothing else depends on Python).
final class SafeTensorsPythonTests: XCTestCase {
  /// Runs `python3 -c script arguments…`; nil if Python cannot be started.
  func python(_ script: String, _ arguments: [String] = []) throws -> (
    status: Int32, output: String
  )? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do { try process.run() } catch { return nil }
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
  }

  func requireSafetensors() throws {
    guard let result = try python("import safetensors, numpy"), result.status == 0 else {
      throw missing(.python, "Python's safetensors and numpy are not installed")
    }
  }

  /// The same tensors as `expectedPython` builds.
  func sample() throws -> SafeTensorsFile {
    SafeTensorsFile(
      tensors: [
        "w": try HostTensor((0..<12).map { Float($0) * 0.25 - 1 }, shape: [3, 4]),
        "x64": try HostTensor((0..<5).map { Double($0) / 3 }, shape: [5, 1], dtype: .float64),
        "scalar": try HostTensor([Float(-2.5)], shape: []),
        "empty": try HostTensor([], shape: [0, 2], dtype: .float64),
      ],
      metadata: ["note": "é \"quoted\"\n"])
  }

  static let tensorsInPython = """
    import numpy as np
    tensors = {
        "w": (np.arange(12, dtype=np.float32) * np.float32(0.25) - np.float32(1)).reshape(3, 4),
        "x64": (np.arange(5, dtype=np.float64) / 3).reshape(5, 1),
        "scalar": np.array(-2.5, dtype=np.float32),
        "empty": np.zeros((0, 2), dtype=np.float64),
    }
    metadata = {"note": "é \\"quoted\\"\\n"}
    """

  func testPythonReadsOurFiles() throws {
    try requireSafetensors()
    let url = try makeTemporaryDirectory().appendingPathComponent("from-swift.safetensors")
    try sample().write(to: url)
    let script =
      Self.tensorsInPython + """

        import sys
        from safetensors import safe_open
        with safe_open(sys.argv[1], framework="np") as f:
            assert f.metadata() == metadata, f.metadata()
            assert sorted(f.keys()) == sorted(tensors), list(f.keys())
            for name, expected in tensors.items():
                got = f.get_tensor(name)
                assert got.dtype == expected.dtype and got.shape == expected.shape, (name, got)
                assert np.array_equal(got, expected), (name, got, expected)
        print("ok")
        """
    let result = try XCTUnwrap(python(script, [url.path]))
    XCTAssertEqual(result.status, 0, result.output)
    XCTAssertEqual(result.output, "ok\n")
  }

  func testWeReadPythonFilesAndWriteTheSameBytes() throws {
    try requireSafetensors()
    let url = try makeTemporaryDirectory().appendingPathComponent("from-python.safetensors")
    let script =
      Self.tensorsInPython + """

        import sys
        from safetensors.numpy import save_file
        save_file(tensors, sys.argv[1], metadata=metadata)
        """
    let result = try XCTUnwrap(python(script, [url.path]))
    XCTAssertEqual(result.status, 0, result.output)
    let file = try SafeTensorsFile.read(from: url)
    XCTAssertEqual(file, try sample())
    // With a single metadata entry (Python orders several arbitrarily), the bytes agree exactly.
    XCTAssertEqual([UInt8](try Data(contentsOf: url)), try sample().serialized())
  }
}
