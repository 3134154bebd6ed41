import Kernels

/// An n-dimensional array of `Float32` or `Float64` in contiguous row-major storage on one backend.
///
/// A value type over shared, immutable device storage: every operation allocates its result, so
/// copies are cheap and never alias writes. A tensor that takes part in a differentiated
/// computation also carries the node that records how it was made (see `Autodiff.swift`).
public struct Tensor {
  public let shape: [Int]
  public let dtype: DType
  public let backend: any Backend
  /// The storage; at least `count` elements.
  public let buffer: DeviceBuffer
  /// How this tensor was computed, when gradients flow through it.
  var node: GradNode?

  init(
    shape: [Int], dtype: DType, backend: any Backend, buffer: DeviceBuffer, node: GradNode? = nil
  ) {
    self.shape = shape
    self.dtype = dtype
    self.backend = backend
    self.buffer = buffer
    self.node = node
  }

  /// The number of elements.
  public var count: Int { shape.reduce(1, *) }
  public var rank: Int { shape.count }

  /// Whether gradients are being recorded through this tensor.
  public var isTracked: Bool { node != nil }

  /// The same values with no gradient history.
  public var detached: Tensor {
    var t = self
    t.node = nil
    return t
  }

  /// An uninitialised tensor on the same backend and of the same type (every op writes all of it).
  func empty(_ shape: [Int]) throws -> Tensor {
    try Tensor.empty(shape, dtype: dtype, on: backend)
  }

  /// The number of elements of `shape`, or an error naming `op` when a size is negative or the
  /// product overflows (shapes come from settings and files, not only from code).
  static func elementCount(_ shape: [Int], op: String) throws -> Int {
    var n = 1
    for size in shape {
      guard size >= 0 else {
        throw TensorError.invalidShape(op: op, shape: shape, reason: "negative size \(size)")
      }
      let (product, overflow) = n.multipliedReportingOverflow(by: size)
      guard !overflow else {
        throw TensorError.invalidShape(op: op, shape: shape, reason: "more than Int.max elements")
      }
      n = product
    }
    return n
  }

  static func empty(_ shape: [Int], dtype: DType, on backend: any Backend) throws -> Tensor {
    guard backend.supports(dtype) else {
      throw BackendError.unsupportedType(dtype, backend: backend.name)
    }
    let buffer = try backend.allocate(try elementCount(shape, op: "allocate"), dtype)
    return Tensor(shape: shape, dtype: dtype, backend: backend, buffer: buffer)
  }

  /// Throws unless `other` lives on the same backend with the same element type.
  func checkCompatible(_ other: Tensor, _ op: String) throws {
    guard backend === other.backend else {
      throw TensorError.deviceMismatch(op: op, lhs: backend.name, rhs: other.backend.name)
    }
    guard dtype == other.dtype else {
      throw TensorError.dtypeMismatch(op: op, lhs: dtype, rhs: other.dtype)
    }
  }
}

extension Tensor: CustomStringConvertible {
  public var description: String {
    let values = (try? toDoubles()) ?? []
    let shown = values.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
    return "Tensor(\(shape), \(dtype), [\(shown)\(values.count > 8 ? ", …" : "")])"
  }
}
