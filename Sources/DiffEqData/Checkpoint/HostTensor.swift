import DiffEqCore
import Kernels

/// A tensor's values in host memory, as a safetensors file stores them: an element type, a shape
/// and the raw little-endian element bytes.
///
/// Holding bytes rather than numbers makes a checkpoint round trip bit-exact (NaN payloads and
/// signed zeros included) and lets files be written without conversion.
public struct HostTensor: Sendable, Equatable {
  public let dtype: DType
  public let shape: [Int]
  /// `count × dtype.size` bytes, element by element in row-major order, each little-endian.
  public let bytes: [UInt8]

  /// The number of elements (1 for the scalar shape `[]`).
  public var count: Int { shape.reduce(1, *) }

  /// Throws `CheckpointError.invalidArgument` unless the shape is non-negative and `bytes`
  /// holds exactly its elements.
  public init(dtype: DType, shape: [Int], bytes: [UInt8]) throws {
    guard let size = HostTensor.byteCount(shape: shape, dtype: dtype), size == bytes.count else {
      throw CheckpointError.invalidArgument(
        "HostTensor: \(bytes.count) bytes for shape \(shape) of \(dtype)")
    }
    self.dtype = dtype
    self.shape = shape
    self.bytes = bytes
  }

  /// `values` (row-major) stored as `dtype`.
  public init(_ values: [Double], shape: [Int], dtype: DType = .float64) throws {
    let bytes: [UInt8]
    switch dtype {
    case .float32: bytes = littleEndianBytes(values.map { Float($0).bitPattern.littleEndian })
    case .float64: bytes = littleEndianBytes(values.map { $0.bitPattern.littleEndian })
    }
    try self.init(dtype: dtype, shape: shape, bytes: bytes)
  }

  /// `values` (row-major) stored as float32.
  public init(_ values: [Float], shape: [Int]) throws {
    try self.init(
      dtype: .float32, shape: shape,
      bytes: littleEndianBytes(values.map { $0.bitPattern.littleEndian }))
  }

  /// A copy of `tensor`'s values (waits for pending device work).
  public init(_ tensor: Tensor) throws {
    switch tensor.dtype {
    case .float32: try self.init(tensor.toFloats(), shape: tensor.shape)
    case .float64: try self.init(tensor.toDoubles(), shape: tensor.shape, dtype: .float64)
    }
  }

  /// The elements as `Double`s.
  public var doubles: [Double] {
    switch dtype {
    case .float32: return floats.map(Double.init)
    case .float64:
      return words(UInt64.self).map { Double(bitPattern: UInt64(littleEndian: $0)) }
    }
  }

  /// The elements as `Float`s (rounded from float64).
  public var floats: [Float] {
    switch dtype {
    case .float32: return words(UInt32.self).map { Float(bitPattern: UInt32(littleEndian: $0)) }
    case .float64: return doubles.map(Float.init)
    }
  }

  /// A new tensor with these values, shape and element type on `backend`.
  public func tensor(on backend: any Backend) throws -> Tensor {
    switch dtype {
    case .float32: return try Tensor(floats, shape: shape, on: backend)
    case .float64: return try Tensor(doubles, shape: shape, dtype: .float64, on: backend)
    }
  }

  /// The bytes of `shape` elements of `dtype`; nil for a negative size or on overflow.
  static func byteCount(shape: [Int], dtype: DType) -> Int? {
    var total = dtype.size
    for n in shape {
      guard n >= 0 else { return nil }
      let (product, overflow) = total.multipliedReportingOverflow(by: n)
      guard !overflow else { return nil }
      total = product
    }
    return total
  }

  private func words<W: FixedWidthInteger>(_: W.Type) -> [W] {
    let n = bytes.count / MemoryLayout<W>.size
    return [W](unsafeUninitializedCapacity: n) { buffer, initialized in
      bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: $0) }
      initialized = n
    }
  }
}

private func littleEndianBytes<W: FixedWidthInteger>(_ words: [W]) -> [UInt8] {
  words.withUnsafeBytes { Array($0) }
}
