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

  /// The batch-wide im2col of the `Backend` contract: cols [C·kh·kw, N·Ho·Wo].
  static func im2col<T: CPUScalar>(
    _ x: UnsafeMutablePointer<T>, _ cols: UnsafeMutablePointer<T>, _ g: ConvGeometry
  ) {
    let plane = g.outH * g.outW
    let taps = g.kh * g.kw
    // One task per (image, channel): its kh·kw rows of the image's column block.
    parallelFor(g.n * g.c, grain: max(1, 4096 / max(1, taps * plane))) { r in
      for task in r {
        let (n, c) = (task / g.c, task % g.c)
        im2colChannel(x + task * g.h * g.w, g, cols + c * taps * g.columns + n * plane, g.columns)
      }
    }
  }

  /// The adjoint of `im2col` over the batch: x (overwritten) [N, C, H, W].
  static func col2im<T: CPUScalar>(
    _ cols: UnsafeMutablePointer<T>, _ x: UnsafeMutablePointer<T>, _ g: ConvGeometry
  ) {
    let plane = g.outH * g.outW
    let taps = g.kh * g.kw
    // Each (image, channel) plane of x gathers from its own rows and columns only, so planes are
    // independent tasks and need no atomics.
    parallelFor(g.n * g.c, grain: max(1, 4096 / max(1, taps * plane))) { r in
      for task in r {
        let (n, c) = (task / g.c, task % g.c)
        col2imChannel(cols + c * taps * g.columns + n * plane, g.columns, g, x + task * g.h * g.w)
      }
    }
  }

  /// im2col of one channel plane `src` [H, W] of one image: writes the kh·kw rows
  /// dst[(i·kw + j)·ld + oh·Wo + ow] = src[oh·s − p + i, ow·s − p + j] (0 outside), Ho·Wo columns each.
  static func im2colChannel<T: CPUScalar>(
    _ src: UnsafePointer<T>, _ g: ConvGeometry, _ dst: UnsafeMutablePointer<T>, _ ld: Int
  ) {
    let (oh, ow, s, p) = (g.outH, g.outW, g.stride, g.pad)
    // Stride 1 with an output as wide as the input ("same" width): output (y, x) of row (i, j) reads
    // input offset y·W + x + (i − p)·W + (j − p), so a row's whole valid block is one contiguous
    // copy; the few columns that wrap around a row edge are zeroed afterwards.
    let contiguous = s == 1 && ow == g.w
    for i in 0..<g.kh {
      let (ylo, yhi) = validRange(i, input: g.h, output: oh, g)
      for j in 0..<g.kw {
        let d = dst + (i * g.kw + j) * ld
        let (lo, hi) = validRange(j, input: g.w, output: ow, g)
        if yhi <= ylo || hi <= lo {
          d.update(repeating: 0, count: oh * ow)
          continue
        }
        d.update(repeating: 0, count: ylo * ow)
        (d + yhi * ow).update(repeating: 0, count: (oh - yhi) * ow)
        if contiguous {
          let first = ylo * ow + lo
          let end = (yhi - 1) * ow + hi
          (d + first).update(from: src + first + (i - p) * g.w + (j - p), count: end - first)
          let rows = d + ylo * ow
          for x in 0..<lo { zeroColumn(rows + x, stride: ow, count: yhi - ylo) }
          for x in hi..<ow { zeroColumn(rows + x, stride: ow, count: yhi - ylo) }
          continue
        }
        for y in ylo..<yhi {
          let row = d + y * ow
          let from = src + (y * s - p + i) * g.w + (j - p)
          for x in 0..<lo { row[x] = 0 }
          if s == 1 {
            for x in lo..<hi { row[x] = from[x] }
          } else {
            for x in lo..<hi { row[x] = from[x * s] }
          }
          for x in hi..<ow { row[x] = 0 }
        }
      }
    }
  }

  /// The adjoint of `im2colChannel`: dst [H, W] (overwritten) = Σ of the kh·kw rows of `cols`
  /// (stride `ld`) that read each element.
  static func col2imChannel<T: CPUScalar>(
    _ cols: UnsafePointer<T>, _ ld: Int, _ g: ConvGeometry, _ dst: UnsafeMutablePointer<T>
  ) {
    let (oh, ow, s, p) = (g.outH, g.outW, g.stride, g.pad)
    dst.update(repeating: 0, count: g.h * g.w)
    for i in 0..<g.kh {
      let (ylo, yhi) = validRange(i, input: g.h, output: oh, g)
      for j in 0..<g.kw {
        let src = cols + (i * g.kw + j) * ld
        let (lo, hi) = validRange(j, input: g.w, output: ow, g)
        guard ylo < yhi, lo < hi else { continue }
        for y in ylo..<yhi {
          let to = dst + (y * s - p + i) * g.w + (j - p)
          let row = src + y * ow
          if s == 1 {
            for x in lo..<hi { to[x] += row[x] }
          } else {
            for x in lo..<hi { to[x * s] += row[x] }
          }
        }
      }
    }
  }

  /// The outputs [lo, hi) along one axis whose input index o·s − p + t, for kernel offset t, lies
  /// inside 0..<input.
  @inline(__always)
  static func validRange(_ t: Int, input: Int, output: Int, _ g: ConvGeometry) -> (Int, Int) {
    // o·s − p + t ≥ 0  ⇔  o ≥ ⌈(p − t)/s⌉;  o·s − p + t ≤ input − 1  ⇔  o ≤ ⌊(input − 1 + p − t)/s⌋.
    let lo = max(0, (g.pad - t + g.stride - 1) / g.stride)
    let top = input - 1 + g.pad - t
    let hi = top < 0 ? 0 : min(output, top / g.stride + 1)
    return (min(lo, hi), hi)
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
