import Kernels

/// Errors raised by tensor operations: the op's name and the offending shapes or devices.
public enum TensorError: Error, CustomStringConvertible, Equatable {
  case shapeMismatch(op: String, lhs: [Int], rhs: [Int])
  case invalidShape(op: String, shape: [Int], reason: String)
  case deviceMismatch(op: String, lhs: String, rhs: String)
  case dtypeMismatch(op: String, lhs: DType, rhs: DType)
  case invalidArgument(op: String, reason: String)
  case noGradient(String)

  public var description: String {
    switch self {
    case .shapeMismatch(let op, let l, let r): return "\(op): shapes \(l) and \(r) do not match"
    case .invalidShape(let op, let s, let why): return "\(op): invalid shape \(s): \(why)"
    case .deviceMismatch(let op, let l, let r):
      return "\(op): tensors live on different devices (\(l) and \(r))"
    case .dtypeMismatch(let op, let l, let r): return "\(op): element types \(l) and \(r) differ"
    case .invalidArgument(let op, let why): return "\(op): \(why)"
    case .noGradient(let why): return "no gradient: \(why)"
    }
  }
}
