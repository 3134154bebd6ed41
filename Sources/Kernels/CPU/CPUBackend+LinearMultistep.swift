/// The LM-ResNet update and its adjoint, element-wise over all cores; dk's sum is taken in Double
/// over fixed blocks, so it does not depend on the number of threads.
extension CPUBackend {
  /// Elements per partial sum of dk.
  static let lmBlock = 16384

  public func lmUpdate(
    u: DeviceBuffer, previous: DeviceBuffer, branch: DeviceBuffer?, k: DeviceBuffer,
    scale: Double, y: DeviceBuffer, count: Int, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      let (up, pp, yp) = (u.pointer(T.self), previous.pointer(T.self), y.pointer(T.self))
      let kv = k.pointer(T.self)[0]
      let (a, sc) = (1 - kv, T(scale))
      let fp = branch?.pointer(T.self)
      parallelFor(count) { r in
        if let fp {
          for i in r { yp[i] = a * up[i] + kv * pp[i] + sc * fp[i] }
        } else {
          for i in r { yp[i] = a * up[i] + kv * pp[i] }
        }
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func lmUpdateGrad(
    u: DeviceBuffer, previous: DeviceBuffer, k: DeviceBuffer, dy: DeviceBuffer,
    du: DeviceBuffer?, dPrevious: DeviceBuffer?, dBranch: DeviceBuffer?, dk: DeviceBuffer?,
    scale: Double, count: Int, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      let (up, pp, gp) = (u.pointer(T.self), previous.pointer(T.self), dy.pointer(T.self))
      let kv = k.pointer(T.self)[0]
      let (a, sc) = (1 - kv, T(scale))
      let (dup, dpp, dfp) = (
        du?.pointer(T.self), dPrevious?.pointer(T.self), dBranch?.pointer(T.self)
      )
      let blocks = (count + Self.lmBlock - 1) / Self.lmBlock
      var partials = [Double](repeating: 0, count: dk == nil ? 0 : blocks)
      partials.withUnsafeMutableBufferPointer { parts in
        parallelFor(blocks, grain: 1) { r in
          for b in r {
            let lo = b * Self.lmBlock
            let hi = min(count, lo + Self.lmBlock)
            if let dup { for i in lo..<hi { dup[i] = a * gp[i] } }
            if let dpp { for i in lo..<hi { dpp[i] = kv * gp[i] } }
            if let dfp { for i in lo..<hi { dfp[i] = sc * gp[i] } }
            if !parts.isEmpty {
              let n = hi - lo
              parts[b] = Double(
                Self.vectorSum(
                  n, { Self.load(gp + lo, $0) * (Self.load(pp + lo, $0) - Self.load(up + lo, $0)) },
                  tail: { gp[lo + $0] * (pp[lo + $0] - up[lo + $0]) }))
            }
          }
        }
      }
      if let dk { dk.pointer(T.self)[0] = T(partials.reduce(0, +)) }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }
}
