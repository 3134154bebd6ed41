import RealModule

/// The dropout hash shared with `kernels/`: a counter-based integer hash (murmur3's finaliser),
/// so the CPU and OpenCL backends draw the same mask from the same seed.
@inline(__always)
func dropoutUniform(seed: UInt32, index: UInt32) -> Double {
  var h = (index &* 0x9E37_79B1) ^ seed
  h ^= h >> 16
  h &*= 0x85EB_CA6B
  h ^= h >> 13
  h &*= 0xC2B2_AE35
  h ^= h >> 16
  return Double(h >> 8) * (1.0 / 16_777_216.0)
}

extension CPUBackend {
  public func dropoutMask(_ y: DeviceBuffer, count: Int, p: Double, seed: UInt32, dtype: DType)
    throws
  {
    func run<T: CPUScalar>(_: T.Type) {
      let out = y.pointer(T.self)
      let keep = T(1 / (1 - p))
      parallelFor(count, grain: 1 << 15) { r in
        for i in r {
          out[i] = dropoutUniform(seed: seed, index: UInt32(truncatingIfNeeded: i)) >= p ? keep : 0
        }
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func optimizerStep(
    _ step: OptimizerStep, param: DeviceBuffer, grad: DeviceBuffer, state1: DeviceBuffer,
    state2: DeviceBuffer?, count: Int, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      let p = param.pointer(T.self)
      let g = grad.pointer(T.self)
      let s1 = state1.pointer(T.self)
      switch step {
      case .sgd(let lr, let momentum, let nesterov, let wd):
        let (lr, mu, wd) = (T(lr), T(momentum), T(wd))
        parallelFor(count) { r in
          for i in r {
            let gi = g[i] + wd * p[i]
            s1[i] = mu * s1[i] + gi
            p[i] -= lr * (nesterov ? gi + mu * s1[i] : s1[i])
          }
        }
      case .adam(let lr, let b1, let b2, let eps, let wd, let decoupled, let t):
        guard let v = state2?.pointer(T.self) else { preconditionFailure("adam needs two states") }
        let c1 = T(1 - Double.pow(b1, Double(t)))
        let c2 = T(1 - Double.pow(b2, Double(t)))
        let (lr, b1, b2, eps, wd) = (T(lr), T(b1), T(b2), T(eps), T(wd))
        parallelFor(count) { r in
          for i in r {
            var gi = g[i]
            if decoupled { p[i] -= lr * wd * p[i] } else { gi += wd * p[i] }
            s1[i] = b1 * s1[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            p[i] -= lr * (s1[i] / c1) / ((v[i] / c2).squareRoot() + eps)
          }
        }
      case .rmsprop(let lr, let alpha, let eps):
        let (lr, a, eps) = (T(lr), T(alpha), T(eps))
        parallelFor(count) { r in
          for i in r {
            s1[i] = a * s1[i] + (1 - a) * g[i] * g[i]
            p[i] -= lr * g[i] / (s1[i].squareRoot() + eps)
          }
        }
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }
}
