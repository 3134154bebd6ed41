import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

// MARK: - Backends

/// The CPU backend shared by the tests (backends own caches, so tests reuse one instance).
let sharedCPU = CPUBackend()

/// Every backend the tests run on: the CPU, then each OpenCL device present. This is the one
/// place a new backend is added.
func testBackends() -> [any Backend] {
  if openCLBackends.isEmpty && TestRequirement.opencl.isRequired {
    XCTFail("DIFFEQNET_REQUIRE names opencl, but no OpenCL backend opened: \(openCLFailures)")
  }
  return [sharedCPU] + openCLBackends
}

/// One backend per OpenCL device, built once (kernel compilation is slow); empty without devices.
/// GEMM runs in the OpenCL kernel even on CPU devices (PoCL), so the kernel itself is tested.
let openCLBackends: [any Backend] = openCLSetup.backends

/// Devices that failed to open, with the error: BackendConsistencyTests fails on any.
var openCLFailures: [String] { openCLSetup.failures }

private let openCLSetup: (backends: [any Backend], failures: [String]) = {
  var backends: [any Backend] = []
  var failures: [String] = []
  for (i, device) in OpenCLBackend.devices().enumerated() {
    do {
      backends.append(try OpenCLBackend(deviceIndex: i, options: .init(blasOnCPUDevice: false)))
    } catch {
      failures.append("opencl:\(i) \(device): \(error)")
    }
  }
  return (backends, failures)
}()

/// Backends other than the CPU, for the backend-versus-CPU comparisons.
func acceleratorBackends() -> [any Backend] {
  testBackends().filter { !($0 is CPUBackend) }
}

/// The element types `backend` computes in, float32 first.
func dtypes(on backend: any Backend) -> [DType] {
  DType.allCases.filter { backend.supports($0) }
}

/// The forward tolerance on ‖out − ref‖/‖ref‖ for an element type.
func forwardTolerance(_ dtype: DType) -> Double { dtype == .float32 ? 1e-5 : 1e-12 }

// MARK: - Comparisons

// MARK: - Host ↔ tensor

extension HostTensor {
  /// The tensor holding these values, rounded to `dtype`.
  func tensor(_ dtype: DType, on backend: any Backend) throws -> Tensor {
    try Tensor(data, shape: shape, dtype: dtype, on: backend)
  }
}

extension Tensor {
  var host: HostTensor {
    get throws { HostTensor(shape, try toDoubles()) }
  }
}

// MARK: - Pool poisoning

/// Fills the pool's free lists with NaN buffers: `copies` NaN tensors for each element count are
/// allocated and dropped, so the next allocations of those sizes reuse NaN-filled memory and any
/// output element an op forgets to write shows up as NaN. (PoolTests proves the mechanism.)
func poisonPool(_ backend: any Backend, _ dtype: DType, counts: [Int], copies: Int = 3) throws {
  var junk: [Tensor] = []
  for n in Set(counts) where n > 0 {
    for _ in 0..<copies { junk.append(try Tensor.full([n], .nan, dtype: dtype, on: backend)) }
  }
  try backend.synchronize()
  junk.removeAll()
}

// MARK: - Random inputs

/// A stable 64-bit seed from a case name (FNV-1a), so each case draws its own fresh inputs and a
/// failure is reproducible from the name alone.
func seed(_ name: String, salt: UInt64 = 0) -> UInt64 {
  var h: UInt64 = 0xcbf2_9ce4_8422_2325
  for b in name.utf8 {
    h ^= UInt64(b)
    h &*= 0x100_0000_01b3
  }
  return h ^ salt
}

extension RandomState {
  mutating func normal(_ shape: [Int], mean: Double = 0, std: Double = 1) -> HostTensor {
    HostTensor(shape, (0..<shape.reduce(1, *)).map { _ in mean + std * nextNormal() })
  }

  mutating func uniform(_ shape: [Int], _ low: Double, _ high: Double) -> HostTensor {
    HostTensor(shape, (0..<shape.reduce(1, *)).map { _ in low + (high - low) * nextUniform() })
  }

  /// |x| uniform in [low, high] with a random sign: keeps inputs away from kinks at 0.
  mutating func awayFromZero(_ shape: [Int], _ low: Double = 0.1, _ high: Double = 2)
    -> HostTensor
  {
    HostTensor(
      shape,
      (0..<shape.reduce(1, *)).map { _ in
        let m = low + (high - low) * nextUniform()
        return nextUniform() < 0.5 ? -m : m
      })
  }

  /// Values k/10 + offset ± 0.01 for integers k in [−20, 20]: two grids with offsets 0.025 and
  /// 0.075 never come closer than 0.03, so `maximum` of them never ties.
  mutating func grid(_ shape: [Int], offset: Double) -> HostTensor {
    HostTensor(
      shape,
      (0..<shape.reduce(1, *)).map { _ in
        Double(Int(next() % 41) - 20) / 10 + offset + 0.02 * (nextUniform() - 0.5)
      })
  }

  /// Class indices in [0, classes) as exactly representable floats.
  mutating func labels(_ n: Int, classes: Int) -> HostTensor {
    HostTensor([n], (0..<n).map { _ in Double(next() % UInt64(classes)) })
  }
}

// MARK: - Errors

/// The `TensorError` that `body` throws; records a failure and returns nil when it throws nothing
/// or another error.
@discardableResult
func expectTensorError(
  _ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
) -> TensorError? {
  do {
    try body()
    XCTFail("\(what): expected a TensorError, nothing was thrown", file: file, line: line)
  } catch let e as TensorError {
    return e
  } catch {
    XCTFail("\(what): expected a TensorError, got \(error)", file: file, line: line)
  }
  return nil
}

extension TensorError {
  /// The case, for assertions that do not care about the payload.
  var kind: String {
    switch self {
    case .shapeMismatch: "shapeMismatch"
    case .invalidShape: "invalidShape"
    case .deviceMismatch: "deviceMismatch"
    case .dtypeMismatch: "dtypeMismatch"
    case .invalidArgument: "invalidArgument"
    case .noGradient: "noGradient"
    }
  }

  /// The op the error names.
  var op: String? {
    switch self {
    case .shapeMismatch(let op, _, _), .invalidShape(let op, _, _), .deviceMismatch(let op, _, _),
      .dtypeMismatch(let op, _, _), .invalidArgument(let op, _):
      op
    case .noGradient: nil
    }
  }
}
