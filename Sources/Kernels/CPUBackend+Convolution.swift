/// Convolution image by image: each worker im2cols one image into a scratch matrix that stays in
/// its core's L2 cache and multiplies it at once, writing NCHW output directly (no batch-wide
/// patch matrix, no permute). The batch is spread over the cores.
extension CPUBackend {
  public func conv2d(
    _ x: DeviceBuffer, _ w: DeviceBuffer, _ y: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      let (px, pw, py) = (x.pointer(T.self), w.pointer(T.self), y.pointer(T.self))
      let plane = g.outH * g.outW
      Self.perImage(g, T.self) { n, cols, one in
        Self.im2col(px + n * g.c * g.h * g.w, cols, one)
        T.gemm(false, false, o, plane, g.patch, 1, pw, g.patch, cols, plane, 0, py + n * o * plane, plane)
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func conv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      let (pdy, pw, pdx) = (dy.pointer(T.self), w.pointer(T.self), dx.pointer(T.self))
      let plane = g.outH * g.outW
      Self.perImage(g, T.self) { n, cols, one in
        T.gemm(true, false, g.patch, plane, o, 1, pw, g.patch, pdy + n * o * plane, plane, 0, cols, plane)
        Self.col2im(cols, pdx + n * g.c * g.h * g.w, one)
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func conv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, _ dw: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    func run<T: CPUScalar>(_: T.Type) {
      let (pdy, px, pdw) = (dy.pointer(T.self), x.pointer(T.self), dw.pointer(T.self))
      let plane = g.outH * g.outW
      let size = o * g.patch
      // One partial sum of dW per worker, added at the end: workers never share an output.
      let workers = min(hostCores, g.n)
      let partials = UnsafeMutablePointer<T>.allocate(capacity: size * workers)
      defer { partials.deallocate() }
      Self.perImage(g, T.self, workers: workers) { n, cols, one, worker, first in
        Self.im2col(px + n * g.c * g.h * g.w, cols, one)
        T.gemm(
          false, true, o, g.patch, plane, 1, pdy + n * o * plane, plane, cols, plane,
          first ? 0 : 1, partials + worker * size, g.patch)
      }
      for i in 0..<size {
        var acc: T = 0
        for k in 0..<workers { acc += partials[k * size + i] }
        pdw[i] = acc
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  /// Runs `body(image, scratch, singleImageGeometry)` for every image, images split into
  /// contiguous runs over the cores, each worker with its own patch-matrix scratch.
  static func perImage<T: CPUScalar>(
    _ g: ConvGeometry, _: T.Type,
    _ body: (Int, UnsafeMutablePointer<T>, ConvGeometry) -> Void
  ) {
    perImage(g, T.self, workers: min(hostCores, g.n)) { n, cols, one, _, _ in body(n, cols, one) }
  }

  /// As above, also telling `body` its worker index and whether this is the worker's first image.
  static func perImage<T: CPUScalar>(
    _ g: ConvGeometry, _: T.Type, workers: Int,
    _ body: (Int, UnsafeMutablePointer<T>, ConvGeometry, Int, Bool) -> Void
  ) {
    var one = g
    one.n = 1
    let per = (g.n + workers - 1) / workers
    parallelFor(workers, grain: 1) { r in
      let cols = UnsafeMutablePointer<T>.allocate(capacity: g.patch * g.outH * g.outW)
      defer { cols.deallocate() }
      for worker in r {
        for n in (worker * per)..<min(g.n, (worker + 1) * per) {
          body(n, cols, one, worker, n == worker * per)
        }
      }
    }
  }
}
