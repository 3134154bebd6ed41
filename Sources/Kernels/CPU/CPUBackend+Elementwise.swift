import RealModule

extension CPUBackend {
  public func fill(_ y: DeviceBuffer, value: Double, count: Int, dtype: DType) throws {
    switch dtype {
    case .float32: y.pointer(Float.self).update(repeating: Float(value), count: count)
    case .float64: y.pointer(Double.self).update(repeating: value, count: count)
    }
  }

  public func unary(_ op: UnaryOp, _ x: DeviceBuffer, _ y: DeviceBuffer, count: Int, dtype: DType)
    throws
  {
    switch dtype {
    case .float32: Self.unary(op, x.pointer(Float.self), y.pointer(Float.self), count)
    case .float64: Self.unary(op, x.pointer(Double.self), y.pointer(Double.self), count)
    }
  }

  public func unaryGrad(
    _ op: UnaryOp, x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, count: Int, dtype: DType
  ) throws {
    switch dtype {
    case .float32:
      Self.unaryGrad(
        op, x.pointer(Float.self), dy.pointer(Float.self), dx.pointer(Float.self), count)
    case .float64:
      Self.unaryGrad(
        op, x.pointer(Double.self), dy.pointer(Double.self), dx.pointer(Double.self), count)
    }
  }

  public func affine(
    _ x: DeviceBuffer, _ y: DeviceBuffer, scale: Double, shift: Double, count: Int, dtype: DType
  ) throws {
    switch dtype {
    case .float32: Self.affine(x.pointer(Float.self), y.pointer(Float.self), scale, shift, count)
    case .float64: Self.affine(x.pointer(Double.self), y.pointer(Double.self), scale, shift, count)
    }
  }

  public func binary(
    _ op: BinaryOp, _ a: DeviceBuffer, _ b: DeviceBuffer, _ out: DeviceBuffer,
    layout: BroadcastLayout, dtype: DType
  ) throws {
    switch dtype {
    case .float32:
      Self.binary(op, a.pointer(Float.self), b.pointer(Float.self), out.pointer(Float.self), layout)
    case .float64:
      Self.binary(
        op, a.pointer(Double.self), b.pointer(Double.self), out.pointer(Double.self), layout)
    }
  }

  @inline(__always)
  static func apply<T: CPUScalar>(_ op: UnaryOp, _ v: T) -> T {
    switch op {
    case .neg: return -v
    case .relu: return v > 0 ? v : 0
    case .tanh: return T.fastTanh(v)
    case .sigmoid: return 1 / (1 + T.exp(-v))
    // log(1 + e^v) without overflow for large v.
    case .softplus: return max(v, 0) + T.log(onePlus: T.exp(-Swift.abs(v)))
    case .elu: return v > 0 ? v : T.expMinusOne(v)
    case .exp: return T.exp(v)
    case .log: return T.log(v)
    case .square: return v * v
    case .sqrt: return v.squareRoot()
    case .abs: return Swift.abs(v)
    case .reciprocal: return 1 / v
    }
  }

  /// f'(v)
  @inline(__always)
  static func derivative<T: CPUScalar>(_ op: UnaryOp, _ v: T) -> T {
    switch op {
    case .neg: return -1
    case .relu: return v > 0 ? 1 : 0
    // Written with e = exp(−|x|) rather than 1 − tanh² or s(1 − s): those cancel to a
    // relative error of ~1e-5 in Float32 for large |x|, and both backends use these forms.
    case .tanh:
      let e = T.fastExp(-2 * Swift.abs(v))
      return 4 * e / ((1 + e) * (1 + e))
    case .sigmoid:
      let e = T.fastExp(-Swift.abs(v))
      return e / ((1 + e) * (1 + e))
    case .softplus: return 1 / (1 + T.exp(-v))
    case .elu: return v > 0 ? 1 : T.exp(v)
    case .exp: return T.exp(v)
    case .log: return 1 / v
    case .square: return 2 * v
    case .sqrt: return 1 / (2 * v.squareRoot())
    case .abs: return v > 0 ? 1 : (v < 0 ? -1 : 0)
    case .reciprocal: return -1 / (v * v)
    }
  }

  static func unary<T: CPUScalar>(
    _ op: UnaryOp, _ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>, _ count: Int
  ) {
    parallelFor(count, grain: op == .relu || op == .neg ? 1 << 16 : 1 << 13) { r in
      switch op {
      // The cheap cases get their own loops so they vectorise.
      case .relu: for i in r { y[i] = x[i] > 0 ? x[i] : 0 }
      case .neg: for i in r { y[i] = -x[i] }
      case .square: for i in r { y[i] = x[i] * x[i] }
      case .tanh:
        if !T.vectorisedTanh(x + r.lowerBound, y + r.lowerBound, r.count) {
          for i in r { y[i] = T.fastTanh(x[i]) }
        }
      default: for i in r { y[i] = apply(op, x[i]) }
      }
    }
  }

  static func unaryGrad<T: CPUScalar>(
    _ op: UnaryOp, _ x: UnsafeMutablePointer<T>, _ dy: UnsafeMutablePointer<T>,
    _ dx: UnsafeMutablePointer<T>, _ count: Int
  ) {
    parallelFor(count, grain: 1 << 13) { r in
      switch op {
      case .relu:
        // dy is loaded unconditionally so the select vectorises (a load behind the condition
        // cannot be speculated and compiles to a branch).
        for i in r {
          let g = dy[i]
          dx[i] = x[i] > 0 ? g : 0
        }
      // Their own loops, so the switch is outside and the loop vectorises.
      case .tanh:
        if !T.vectorisedTanhGradient(
          x + r.lowerBound, dy + r.lowerBound, dx + r.lowerBound, r.count)
        {
          for i in r { dx[i] = dy[i] * derivative(.tanh, x[i]) }
        }
      case .sigmoid: for i in r { dx[i] = dy[i] * derivative(.sigmoid, x[i]) }
      default: for i in r { dx[i] = dy[i] * derivative(op, x[i]) }
      }
    }
  }

  static func affine<T: CPUScalar>(
    _ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>, _ scale: Double, _ shift: Double,
    _ count: Int
  ) {
    let a = T(scale)
    let b = T(shift)
    parallelFor(count, grain: 1 << 16) { r in for i in r { y[i] = a * x[i] + b } }
  }

  @inline(__always)
  static func combine<T: CPUScalar>(_ op: BinaryOp, _ a: T, _ b: T) -> T {
    switch op {
    case .add: return a + b
    case .sub: return a - b
    case .mul: return a * b
    case .div: return a / b
    // fmax semantics, as OpenCL's: a NaN operand yields the other operand.
    case .maximum: return a.isNaN ? b : (b.isNaN ? a : Swift.max(a, b))
    }
  }

  static func binary<T: CPUScalar>(
    _ op: BinaryOp, _ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>,
    _ out: UnsafeMutablePointer<T>, _ l: BroadcastLayout
  ) {
    let s = l.shape
    let (sa, sb) = (l.aStrides, l.bStrides)
    // Rows along the last dimension are the unit of work: inside a row the strides are constant,
    // so the common cases (both contiguous, or one side a broadcast scalar) are tight loops.
    let rows = s[0] * s[1] * s[2]
    let n = s[3]
    let (a3, b3) = (sa[3], sb[3])
    parallelFor(rows, grain: max(1, (1 << 15) / max(1, n))) { r in
      for row in r {
        let i2 = row % s[2]
        let i1 = (row / s[2]) % s[1]
        let i0 = row / (s[2] * s[1])
        let pa = a + i0 * sa[0] + i1 * sa[1] + i2 * sa[2]
        let pb = b + i0 * sb[0] + i1 * sb[1] + i2 * sb[2]
        let po = out + row * n
        if a3 == 1 && b3 == 1 {
          switch op {
          case .add: for j in 0..<n { po[j] = pa[j] + pb[j] }
          case .sub: for j in 0..<n { po[j] = pa[j] - pb[j] }
          case .mul: for j in 0..<n { po[j] = pa[j] * pb[j] }
          default: for j in 0..<n { po[j] = combine(op, pa[j], pb[j]) }
          }
        } else if a3 == 1 && b3 == 0 {
          let v = pb[0]
          for j in 0..<n { po[j] = combine(op, pa[j], v) }
        } else {
          for j in 0..<n { po[j] = combine(op, pa[j * a3], pb[j * b3]) }
        }
      }
    }
  }
}
