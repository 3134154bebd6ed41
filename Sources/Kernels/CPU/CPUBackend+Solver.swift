/// The fused arithmetic of ODE solvers: stage combinations and the error norm in one pass each.
extension CPUBackend {
  public func linearCombination(
    _ xs: [DeviceBuffer], coefficients: [Double], into y: DeviceBuffer, count: Int, dtype: DType
  ) throws {
    precondition(xs.count == coefficients.count && !xs.isEmpty)
    func run<T: CPUScalar>(_: T.Type) {
      let out = y.pointer(T.self)
      parallelFor(count, grain: 1 << 14) { r in
        // Blocks of 1024 keep the running sums in L1 while each input streams through once.
        var lo = r.lowerBound
        while lo < r.upperBound {
          let hi = min(r.upperBound, lo + 1024)
          let p0 = xs[0].pointer(T.self)
          let c0 = T(coefficients[0])
          for i in lo..<hi { out[i] = c0 * p0[i] }
          for k in 1..<xs.count {
            let p = xs[k].pointer(T.self)
            let c = T(coefficients[k])
            for i in lo..<hi { out[i] += c * p[i] }
          }
          lo = hi
        }
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func scaledErrorSquaredSum(
    error: DeviceBuffer, y0: DeviceBuffer, y1: DeviceBuffer, atol: Double, rtol: Double,
    count: Int, dtype: DType
  ) throws -> Double {
    func run<T: CPUScalar>(_: T.Type) -> Double {
      let (e, a, b) = (error.pointer(T.self), y0.pointer(T.self), y1.pointer(T.self))
      let chunks = max(1, min(hostCores, count / (1 << 15)))
      var partial = [Double](repeating: 0, count: chunks)
      let per = (count + chunks - 1) / chunks
      partial.withUnsafeMutableBufferPointer { part in
        let out = part.baseAddress!
        parallelFor(chunks, grain: 1) { r in
          for c in r {
            var acc: Double = 0
            for i in (c * per)..<min(count, (c + 1) * per) {
              // NaN anywhere must surface (Swift.max would drop a NaN in its second operand).
              let m = a[i].isNaN || b[i].isNaN ? T.nan : max(Swift.abs(a[i]), Swift.abs(b[i]))
              let scale = atol + rtol * Double(m)
              let v = Double(e[i]) / scale
              acc += v * v
            }
            out[c] = acc
          }
        }
      }
      return partial.reduce(0, +)
    }
    return dtype == .float32 ? run(Float.self) : run(Double.self)
  }
}
