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
        for y in 0..<oh {
          let iy = y * g.stride - g.pad + i
          let d = dst + y * ow
          if iy < 0 || iy >= g.h {
            for xo in 0..<ow { d[xo] = 0 }
            continue
          }
          let s = src + iy * g.w
          for xo in 0..<ow {
            let ix = xo * g.stride - g.pad + j
            d[xo] = ix >= 0 && ix < g.w ? s[ix] : 0
          }
        }
      }
    }
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
            for y in 0..<oh {
              let iy = y * g.stride - g.pad + i
              if iy < 0 || iy >= g.h { continue }
              let d = dst + iy * g.w
              let s = src + y * ow
              for xo in 0..<ow {
                let ix = xo * g.stride - g.pad + j
                if ix >= 0 && ix < g.w { d[ix] += s[xo] }
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
