extension CPUBackend {
  public func im2col(_ x: DeviceBuffer, _ cols: DeviceBuffer, _ g: ConvGeometry, dtype: DType)
    throws
  {
    switch dtype {
    case .float32: Self.im2col(x.pointer(Float.self), cols.pointer(Float.self), g)
    case .float64: Self.im2col(x.pointer(Double.self), cols.pointer(Double.self), g)
    }
  }

  public func col2im(_ cols: DeviceBuffer, _ x: DeviceBuffer, _ g: ConvGeometry, dtype: DType)
    throws
  {
    switch dtype {
    case .float32: Self.col2im(cols.pointer(Float.self), x.pointer(Float.self), g)
    case .float64: Self.col2im(cols.pointer(Double.self), x.pointer(Double.self), g)
    }
  }

  static func im2col<T: CPUScalar>(
    _ x: UnsafeMutablePointer<T>, _ cols: UnsafeMutablePointer<T>, _ g: ConvGeometry
  ) {
    let (oh, ow) = (g.outH, g.outW)
    let plane = oh * ow
    // One task per (patch row, image): writes one contiguous run of `plane` outputs.
    parallelFor(g.patch * g.n, grain: max(1, 4096 / max(1, plane))) { r in
      for task in r {
        let row = task / g.n
        let n = task % g.n
        let j = row % g.kw
        let i = (row / g.kw) % g.kh
        let c = row / (g.kw * g.kh)
        let src = x + (n * g.c + c) * g.h * g.w
        let dst = cols + row * g.columns + n * plane
        // Output columns whose input column ix = xo·s − p + j lies inside the image.
        let (lo, hi) = validRange(g, j)
        for y in 0..<oh {
          let iy = y * g.stride - g.pad + i
          let d = dst + y * ow
          if iy < 0 || iy >= g.h || lo >= hi {
            d.update(repeating: 0, count: ow)
            continue
          }
          let s = src + iy * g.w
          d.update(repeating: 0, count: lo)
          if g.stride == 1 {
            (d + lo).update(from: s + (lo - g.pad + j), count: hi - lo)
          } else {
            for xo in lo..<hi { d[xo] = s[xo * g.stride - g.pad + j] }
          }
          (d + hi).update(repeating: 0, count: ow - hi)
        }
      }
    }
  }

  /// The output columns [lo, hi) that read inside the input for kernel column j.
  @inline(__always)
  static func validRange(_ g: ConvGeometry, _ j: Int) -> (Int, Int) {
    // xo·s − p + j ≥ 0  ⇔  xo ≥ ⌈(p − j)/s⌉;  xo·s − p + j ≤ w − 1  ⇔  xo ≤ ⌊(w − 1 + p − j)/s⌋.
    let lo = max(0, (g.pad - j + g.stride - 1) / g.stride)
    let top = g.w - 1 + g.pad - j
    let hi = top < 0 ? 0 : min(g.outW, top / g.stride + 1)
    return (min(lo, hi), hi)
  }

  static func col2im<T: CPUScalar>(
    _ cols: UnsafeMutablePointer<T>, _ x: UnsafeMutablePointer<T>, _ g: ConvGeometry
  ) {
    let (oh, ow) = (g.outH, g.outW)
    let plane = oh * ow
    // Each (image, channel) plane of x gathers from its own rows and columns only, so planes are
    // independent tasks and need no atomics.
    parallelFor(g.n * g.c, grain: 1) { r in
      for task in r {
        let n = task / g.c
        let c = task % g.c
        let dst = x + task * g.h * g.w
        dst.update(repeating: 0, count: g.h * g.w)
        for i in 0..<g.kh {
          for j in 0..<g.kw {
            let row = (c * g.kh + i) * g.kw + j
            let src = cols + row * g.columns + n * plane
            let (lo, hi) = validRange(g, j)
            for y in 0..<oh {
              let iy = y * g.stride - g.pad + i
              if iy < 0 || iy >= g.h { continue }
              let d = dst + iy * g.w
              let s = src + y * ow
              if g.stride == 1 {
                let dd = d + (j - g.pad)
                for xo in lo..<hi { dd[xo] += s[xo] }
              } else {
                for xo in lo..<hi { d[xo * g.stride - g.pad + j] += s[xo] }
              }
            }
          }
        }
      }
    }
  }

  public func avgPool(_ x: DeviceBuffer, _ y: DeviceBuffer, _ g: PoolGeometry, dtype: DType) throws
  {
    switch dtype {
    case .float32: Self.avgPool(x.pointer(Float.self), y.pointer(Float.self), g)
    case .float64: Self.avgPool(x.pointer(Double.self), y.pointer(Double.self), g)
    }
  }

  public func avgPoolGrad(_ dy: DeviceBuffer, _ dx: DeviceBuffer, _ g: PoolGeometry, dtype: DType)
    throws
  {
    switch dtype {
    case .float32: Self.avgPoolGrad(dy.pointer(Float.self), dx.pointer(Float.self), g)
    case .float64: Self.avgPoolGrad(dy.pointer(Double.self), dx.pointer(Double.self), g)
    }
  }

  static func avgPool<T: CPUScalar>(
    _ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>, _ g: PoolGeometry
  ) {
    let (oh, ow) = (g.outH, g.outW)
    let inv = 1 / T(g.k * g.k)
    parallelFor(g.n * g.c, grain: 16) { r in
      for plane in r {
        let src = x + plane * g.h * g.w
        let dst = y + plane * oh * ow
        for oy in 0..<oh {
          for ox in 0..<ow {
            var acc: T = 0
            for i in 0..<g.k {
              let row = src + (oy * g.stride + i) * g.w + ox * g.stride
              for j in 0..<g.k { acc += row[j] }
            }
            dst[oy * ow + ox] = acc * inv
          }
        }
      }
    }
  }

  static func avgPoolGrad<T: CPUScalar>(
    _ dy: UnsafeMutablePointer<T>, _ dx: UnsafeMutablePointer<T>, _ g: PoolGeometry
  ) {
    let (oh, ow) = (g.outH, g.outW)
    let inv = 1 / T(g.k * g.k)
    parallelFor(g.n * g.c, grain: 16) { r in
      for plane in r {
        let src = dy + plane * oh * ow
        let dst = dx + plane * g.h * g.w
        dst.update(repeating: 0, count: g.h * g.w)
        for oy in 0..<oh {
          for ox in 0..<ow {
            let v = src[oy * ow + ox] * inv
            for i in 0..<g.k {
              let row = dst + (oy * g.stride + i) * g.w + ox * g.stride
              for j in 0..<g.k { row[j] += v }
            }
          }
        }
      }
    }
  }
}
