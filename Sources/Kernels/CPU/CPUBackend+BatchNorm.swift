/// Batch normalisation: one pass of work per channel, channels spread over the cores. A channel's
/// values are N contiguous runs of HW in NCHW; each run is summed in the element type by the
/// vectorised sums, the runs' totals in Double (M = N·HW reaches 10⁵ and more). The ReLU that
/// follows a norm is applied in the norm's own passes: its output pass forward, and a masked
/// copy of dy, in dx's memory, that the sums and the output pass read backward. In float32 on a
/// CPU with AVX2 and FMA, CVectorMath's `diffeqnet_batch_norm` runs the same passes 8 lanes wide,
/// the backward mask in registers.
extension CPUBackend {
  public func batchNorm(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, variance: DeviceBuffer, running: BatchNormRunning?,
    _ s: BatchNormShape, dtype: DType
  ) throws {
    batchNormTraining(
      x: x, gamma: gamma, beta: beta, y: y, mean: mean, variance: variance, running: running, s,
      relu: false, dtype: dtype)
  }

  public func batchNormReLU(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, variance: DeviceBuffer, running: BatchNormRunning?,
    _ s: BatchNormShape, dtype: DType
  ) throws {
    batchNormTraining(
      x: x, gamma: gamma, beta: beta, y: y, mean: mean, variance: variance, running: running, s,
      relu: true, dtype: dtype)
  }

  private func batchNormTraining(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, y: DeviceBuffer,
    mean: DeviceBuffer, variance: DeviceBuffer, running: BatchNormRunning?,
    _ s: BatchNormShape, relu: Bool, dtype: DType
  ) {
    func run<T: CPUScalar>(_: T.Type) {
      let (xp, yp) = (x.pointer(T.self), y.pointer(T.self))
      let (g, b) = (gamma.pointer(T.self), beta.pointer(T.self))
      let (mp, vp) = (mean.pointer(T.self), variance.pointer(T.self))
      let m = Double(s.perChannel)
      parallelFor(s.c, grain: max(1, 16384 / max(1, s.perChannel))) { r in
        defer {
          // From the batch's statistics, the variance made unbiased (as PyTorch's).
          if let running {
            let unbiased = m > 1 ? m / (m - 1) : 1
            let mo = T(running.momentum)
            for c in r {
              running.newMean.pointer(T.self)[c] =
                (1 - mo) * running.mean.pointer(T.self)[c] + mo * mp[c]
              running.newVariance.pointer(T.self)[c] =
                (1 - mo) * running.variance.pointer(T.self)[c] + mo * T(Double(vp[c]) * unbiased)
            }
          }
        }
        if T.vectorisedBatchNorm(
          .forward(x: xp, gamma: g, beta: b, y: yp, mean: mp, variance: vp, relu: relu), s, r)
        {
          return
        }
        for c in r {
          var total = 0.0
          for n in 0..<s.n { total += Double(Self.sum(xp + (n * s.c + c) * s.hw, s.hw)) }
          let mu = T(total / m)
          // Around the mean, in a second pass: E[x²] − μ² cancels catastrophically.
          var squares = 0.0
          for n in 0..<s.n {
            squares += Double(Self.squaredDeviations(xp + (n * s.c + c) * s.hw, s.hw, from: mu))
          }
          let v = squares / m
          mp[c] = mu
          vp[c] = T(v)
          let a = T(1 / (v + s.eps).squareRoot()) * g[c]
          let shift = b[c] - mu * a
          for n in 0..<s.n {
            let o = (n * s.c + c) * s.hw
            if relu {
              for i in 0..<s.hw { yp[o + i] = max(0, xp[o + i] * a + shift) }
            } else {
              for i in 0..<s.hw { yp[o + i] = xp[o + i] * a + shift }
            }
          }
        }
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func batchNormInference(
    x: DeviceBuffer, gamma: DeviceBuffer, beta: DeviceBuffer, mean: DeviceBuffer,
    variance: DeviceBuffer, y: DeviceBuffer, _ s: BatchNormShape, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      let (xp, yp) = (x.pointer(T.self), y.pointer(T.self))
      let (g, b) = (gamma.pointer(T.self), beta.pointer(T.self))
      let (mp, vp) = (mean.pointer(T.self), variance.pointer(T.self))
      // Rows of HW, one per (sample, channel).
      parallelFor(s.n * s.c, grain: max(1, 16384 / max(1, s.hw))) { r in
        for row in r {
          let c = row % s.c
          let a = g[c] / (vp[c] + T(s.eps)).squareRoot()
          let shift = b[c] - mp[c] * a
          let o = row * s.hw
          for i in 0..<s.hw { yp[o + i] = xp[o + i] * a + shift }
        }
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func batchNormGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, variance: DeviceBuffer,
    dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer, dbeta: DeviceBuffer,
    batchStatistics: Bool, _ s: BatchNormShape, dtype: DType
  ) throws {
    batchNormGradient(
      x: x, gamma: gamma, mean: mean, variance: variance, reluOutput: nil, dy: dy, dx: dx,
      dgamma: dgamma, dbeta: dbeta, batchStatistics: batchStatistics, s, dtype: dtype)
  }

  public func batchNormReLUGrad(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, variance: DeviceBuffer,
    y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, _ s: BatchNormShape, dtype: DType
  ) throws {
    batchNormGradient(
      x: x, gamma: gamma, mean: mean, variance: variance, reluOutput: y, dy: dy, dx: dx,
      dgamma: dgamma, dbeta: dbeta, batchStatistics: true, s, dtype: dtype)
  }

  /// With `reluOutput` (the fused ReLU's y), the gradient of dy·[y > 0], which is first written
  /// into dx, a channel's runs at a time, and then read from there.
  private func batchNormGradient(
    x: DeviceBuffer, gamma: DeviceBuffer, mean: DeviceBuffer, variance: DeviceBuffer,
    reluOutput: DeviceBuffer?, dy: DeviceBuffer, dx: DeviceBuffer, dgamma: DeviceBuffer,
    dbeta: DeviceBuffer, batchStatistics: Bool, _ s: BatchNormShape, dtype: DType
  ) {
    func run<T: CPUScalar>(_: T.Type) {
      let (xp, dxp) = (x.pointer(T.self), dx.pointer(T.self))
      let yp = reluOutput?.pointer(T.self)
      let gp = yp == nil ? dy.pointer(T.self) : dxp
      let (g, mp, vp) = (gamma.pointer(T.self), mean.pointer(T.self), variance.pointer(T.self))
      let (dgp, dbp) = (dgamma.pointer(T.self), dbeta.pointer(T.self))
      let m = T(s.perChannel)
      parallelFor(s.c, grain: max(1, 16384 / max(1, s.perChannel))) { r in
        if T.vectorisedBatchNorm(
          .gradient(
            x: xp, gamma: g, mean: mp, variance: vp, relu: yp, dy: dy.pointer(T.self), dx: dxp,
            dgamma: dgp, dbeta: dbp, batchStatistics: batchStatistics), s, r)
        {
          return
        }
        for c in r {
          let mu = mp[c]
          let rs = 1 / (vp[c] + T(s.eps)).squareRoot()
          var sumDy = 0.0
          var sumDyX = 0.0
          for n in 0..<s.n {
            let o = (n * s.c + c) * s.hw
            if let yp {
              let dyp = dy.pointer(T.self)
              for i in 0..<s.hw { dxp[o + i] = yp[o + i] > 0 ? dyp[o + i] : 0 }
            }
            sumDy += Double(Self.sum(gp + o, s.hw))
            sumDyX += Double(Self.dotDeviations(gp + o, xp + o, s.hw, from: mu))
          }
          let db = T(sumDy)
          let dg = T(sumDyX) * rs
          dgp[c] = dg
          dbp[c] = db
          let a = g[c] * rs
          // dx = a·(dy − db/M − x̂·dg/M), x̂ = (x − μ)·rstd.
          let meanDy = batchStatistics ? db / m : 0
          let meanDyX = batchStatistics ? dg / m * rs : 0
          for n in 0..<s.n {
            let o = (n * s.c + c) * s.hw
            for i in 0..<s.hw {
              dxp[o + i] = a * (gp[o + i] - meanDy - (xp[o + i] - mu) * meanDyX)
            }
          }
        }
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }
}
