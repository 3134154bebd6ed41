import Foundation
import Kernels

extension Tensor {
  /// A tensor holding `values` (row-major) converted to `dtype`.
  public init(
    _ values: [Double], shape: [Int], dtype: DType = .float32, on backend: any Backend
  ) throws {
    guard values.count == shape.reduce(1, *) else {
      throw TensorError.invalidShape(
        op: "Tensor(values:shape:)", shape: shape,
        reason: "\(values.count) values for \(shape.reduce(1, *)) elements")
    }
    self = try Tensor.empty(shape, dtype: dtype, on: backend)
    switch dtype {
    case .float32:
      let f = values.map { Float($0) }
      try f.withUnsafeBytes { try backend.write($0, to: buffer) }
    case .float64:
      try values.withUnsafeBytes { try backend.write($0, to: buffer) }
    }
  }

  /// A float32 tensor holding `values` (row-major).
  public init(_ values: [Float], shape: [Int], on backend: any Backend) throws {
    guard values.count == shape.reduce(1, *) else {
      throw TensorError.invalidShape(
        op: "Tensor(values:shape:)", shape: shape,
        reason: "\(values.count) values for \(shape.reduce(1, *)) elements")
    }
    self = try Tensor.empty(shape, dtype: .float32, on: backend)
    try values.withUnsafeBytes { try backend.write($0, to: buffer) }
  }

  /// The most elements `normal` and `uniform` draw: they fill a host array first, and an
  /// allocation that fails there would end the process rather than throw.
  public static let maxHostDraw = 1 << 32

  /// A tensor of `shape` whose elements `draw` gives in row-major order, drawn on the host.
  static func drawn(
    _ shape: [Int], dtype: DType, on backend: any Backend, op: String, _ draw: () -> Double
  ) throws -> Tensor {
    let n = try elementCount(shape, op: op)
    guard n <= maxHostDraw else {
      throw TensorError.invalidShape(
        op: op, shape: shape, reason: "\(n) elements exceed the \(maxHostDraw) drawn on the host")
    }
    var values = [Double](repeating: 0, count: n)
    for i in 0..<n { values[i] = draw() }
    return try Tensor(values, shape: shape, dtype: dtype, on: backend)
  }

  /// Every element equal to `value`.
  public static func full(
    _ shape: [Int], _ value: Double, dtype: DType = .float32, on backend: any Backend
  ) throws -> Tensor {
    let t = try Tensor.empty(shape, dtype: dtype, on: backend)
    try backend.fill(t.buffer, value: value, count: t.count, dtype: dtype)
    return t
  }

  public static func zeros(_ shape: [Int], dtype: DType = .float32, on backend: any Backend)
    throws -> Tensor
  { try full(shape, 0, dtype: dtype, on: backend) }

  public static func ones(_ shape: [Int], dtype: DType = .float32, on backend: any Backend)
    throws -> Tensor
  { try full(shape, 1, dtype: dtype, on: backend) }

  /// Independent N(mean, std²) samples drawn on the host from `rng`, so a seed gives the same
  /// tensor on every backend.
  public static func normal(
    _ shape: [Int], mean: Double = 0, std: Double = 1, dtype: DType = .float32,
    rng: inout RandomState, on backend: any Backend
  ) throws -> Tensor {
    try drawn(shape, dtype: dtype, on: backend, op: "normal") { mean + std * rng.nextNormal() }
  }

  /// Independent U[low, high) samples drawn on the host from `rng`.
  public static func uniform(
    _ shape: [Int], low: Double = 0, high: Double = 1, dtype: DType = .float32,
    rng: inout RandomState, on backend: any Backend
  ) throws -> Tensor {
    try drawn(shape, dtype: dtype, on: backend, op: "uniform") {
      low + (high - low) * rng.nextUniform()
    }
  }

  /// A zero-filled tensor shaped like this one.
  public func zerosLike() throws -> Tensor {
    try Tensor.zeros(shape, dtype: dtype, on: backend)
  }

  /// The elements as `Double`s (waits for pending device work).
  public func toDoubles() throws -> [Double] {
    switch dtype {
    case .float32: return try toFloats().map(Double.init)
    case .float64:
      var out = [Double](repeating: 0, count: count)
      try out.withUnsafeMutableBytes { try backend.read(buffer, into: $0) }
      return out
    }
  }

  /// The elements as `Float`s (waits for pending device work).
  public func toFloats() throws -> [Float] {
    switch dtype {
    case .float32:
      var out = [Float](repeating: 0, count: count)
      try out.withUnsafeMutableBytes { try backend.read(buffer, into: $0) }
      return out
    case .float64: return try toDoubles().map(Float.init)
    }
  }

  /// The single element of a one-element tensor.
  public func item() throws -> Double {
    guard count == 1 else {
      throw TensorError.invalidShape(op: "item", shape: shape, reason: "expected one element")
    }
    return try toDoubles()[0]
  }

  /// This tensor's values on another backend (and optionally another type). Not differentiable.
  public func to(_ backend: any Backend, dtype: DType? = nil) throws -> Tensor {
    try Tensor(toDoubles(), shape: shape, dtype: dtype ?? self.dtype, on: backend)
  }
}
