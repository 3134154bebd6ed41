extension CPUBackend {
  public func groupNorm(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, rstd: DeviceBuffer, _ s: GroupNormShape, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      Self.groupNorm(
        x.pointer(T.self), gamma.pointer(T.self), beta.pointer(T.self), y.pointer(T.self),
        mean.pointer(T.self), rstd.pointer(T.self), s)
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func groupNormGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer,
    dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer, dbeta: DeviceBuffer,
    _ s: GroupNormShape, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      Self.groupNormGrad(
        x.pointer(T.self), gamma.pointer(T.self), mean.pointer(T.self), rstd.pointer(T.self),
        dy.pointer(T.self), dx.pointer(T.self), dgamma.pointer(T.self), dbeta.pointer(T.self), s)
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  static func groupNorm<T: CPUScalar>(
    _ x: UnsafeMutablePointer<T>, _ gamma: UnsafeMutablePointer<T>,
    _ beta: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>,
    _ mean: UnsafeMutablePointer<T>, _ rstd: UnsafeMutablePointer<T>, _ s: GroupNormShape
  ) {
    let cpg = s.c / s.groups
    let m = cpg * s.hw
    parallelFor(s.n * s.groups, grain: max(1, 8192 / max(1, m))) { r in
      if T.vectorisedGroupNorm(
        .forward(x: x, gamma: gamma, beta: beta, y: y, mean: mean, rstd: rstd), s, r)
      {
        return
      }
      for ng in r {
        let base = x + ng * m
        // Two passes in T: the mean first, so the variance does not cancel catastrophically.
        let mu = sum(base, m) / T(m)
        let sq = squaredDeviations(base, m, from: mu)
        let rs = 1 / (sq / T(m) + T(s.eps)).squareRoot()
        mean[ng] = mu
        rstd[ng] = rs
        let c0 = (ng % s.groups) * cpg
        let out = y + ng * m
        for cc in 0..<cpg {
          let a = rs * gamma[c0 + cc]
          let b = beta[c0 + cc] - mu * a
          let o = cc * s.hw
          for i in 0..<s.hw { out[o + i] = base[o + i] * a + b }
        }
      }
    }
  }

  static func groupNormGrad<T: CPUScalar>(
    _ x: UnsafeMutablePointer<T>, _ gamma: UnsafeMutablePointer<T>,
    _ mean: UnsafeMutablePointer<T>, _ rstd: UnsafeMutablePointer<T>,
    _ dy: UnsafeMutablePointer<T>, _ dx: UnsafeMutablePointer<T>,
    _ dgamma: UnsafeMutablePointer<T>, _ dbeta: UnsafeMutablePointer<T>, _ s: GroupNormShape
  ) {
    let cpg = s.c / s.groups
    let m = cpg * s.hw
    // dx = rstd·(γ·dy − mean(γ·dy) − x̂·mean(γ·dy·x̂)) over each group.
    parallelFor(s.n * s.groups, grain: max(1, 8192 / max(1, m))) { r in
      if T.vectorisedGroupNorm(
        .input(x: x, gamma: gamma, mean: mean, rstd: rstd, dy: dy, dx: dx), s, r)
      {
        return
      }
      for ng in r {
        let mu = mean[ng]
        let rs = rstd[ng]
        let c0 = (ng % s.groups) * cpg
        let xb = x + ng * m
        let gb = dy + ng * m
        var sumG: T = 0
        var sumGX: T = 0
        for cc in 0..<cpg {
          let g = gamma[c0 + cc]
          let a = sum(gb + cc * s.hw, s.hw)
          let b = dotDeviations(gb + cc * s.hw, xb + cc * s.hw, s.hw, from: mu)
          sumG += g * a
          sumGX += g * b * rs
        }
        let meanG = sumG / T(m)
        let meanGX = sumGX / T(m)
        let out = dx + ng * m
        for cc in 0..<cpg {
          let g = gamma[c0 + cc]
          for i in 0..<s.hw {
            let k = cc * s.hw + i
            let xh = (xb[k] - mu) * rs
            out[k] = rs * (g * gb[k] - meanG - xh * meanGX)
          }
        }
      }
    }
    // Per-channel parameter gradients, summed over the batch.
    parallelFor(s.c, grain: max(1, 8192 / max(1, s.n * s.hw))) { r in
      if T.vectorisedGroupNorm(
        .parameters(x: x, mean: mean, rstd: rstd, dy: dy, dgamma: dgamma, dbeta: dbeta), s, r)
      {
        return
      }
      for c in r {
        let g = c / cpg
        var dg: T = 0
        var db: T = 0
        for n in 0..<s.n {
          let off = (n * s.c + c) * s.hw
          let mu = mean[n * s.groups + g]
          let rs = rstd[n * s.groups + g]
          dg += dotDeviations(dy + off, x + off, s.hw, from: mu) * rs
          db += sum(dy + off, s.hw)
        }
        dgamma[c] = dg
        dbeta[c] = db
      }
    }
  }

  public func softmaxCrossEntropyGrad(
    probs: DeviceBuffer, labels: DeviceBuffer, cotangent: DeviceBuffer, dlogits: DeviceBuffer,
    rows: Int, classes: Int, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      let (p, lab, d) = (probs.pointer(T.self), labels.pointer(T.self), dlogits.pointer(T.self))
      let scale = cotangent.pointer(T.self)[0] / T(rows)
      for r in 0..<rows {
        let label = Int(exactly: lab[r]) ?? -1
        for j in 0..<classes {
          d[r * classes + j] = (p[r * classes + j] - (j == label ? 1 : 0)) * scale
        }
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func softmaxCrossEntropy(
    logits: DeviceBuffer, labels: DeviceBuffer, probs: DeviceBuffer, losses: DeviceBuffer,
    rows: Int, classes: Int, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      let z = logits.pointer(T.self)
      let lab = labels.pointer(T.self)
      let p = probs.pointer(T.self)
      let l = losses.pointer(T.self)
      parallelFor(rows, grain: max(1, 4096 / max(1, classes))) { r in
        for row in r {
          let zr = z + row * classes
          let pr = p + row * classes
          var mx = -T.infinity
          for j in 0..<classes { mx = max(mx, zr[j]) }
          var sum: T = 0
          for j in 0..<classes {
            pr[j] = T.exp(zr[j] - mx)
            sum += pr[j]
          }
          let inv = 1 / sum
          for j in 0..<classes { pr[j] *= inv }
          let label = Int(exactly: lab[row]) ?? -1
          // An out-of-range label yields NaN rather than reading out of bounds.
          l[row] = label >= 0 && label < classes ? T.log(sum) + mx - zr[label] : .nan
        }
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }
}
