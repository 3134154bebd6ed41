import Foundation

/// Convolution on the host. 3×3 stride-1 float32 convolutions with enough channels run by
/// Winograd (`CPUBackend+Winograd.swift`); the rest a chunk of images at a time: each worker expands its chunk into a
/// scratch matrix small enough to stay in its core's L2 cache and multiplies it at once with
/// single-threaded OpenBLAS (no batch-wide patch matrix, no batch-wide permute). Two lowerings:
///
/// - "Row taps" (`CPUBackend+ConvRowTaps.swift`), for all but very few input channels: an
///   expansion along the kernel's width only and kh accumulating GEMMs. With stride 1, backward
///   data is the forward convolution of dy with the flipped, transposed kernel and runs the same
///   way; otherwise it is the adjoint, kh GEMMs into the expansion's gradient folded back along
///   the kernel's width (where im2col + GEMM + col2im would write and re-read a patch matrix
///   kh/s times the size and scatter-add all of it back).
/// - im2col + one GEMM per chunk otherwise, with col2im for backward data.
///
/// Chunks are one image when a feature map is large enough for a full-speed GEMM, several
/// otherwise (`ImageChunks`), and are handed to the cores dynamically, so a core slowed down by
/// other work simply takes fewer.
extension CPUBackend {
  public func conv2d(
    _ x: DeviceBuffer, _ w: DeviceBuffer, bias: DeviceBuffer?, _ y: DeviceBuffer,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    // Winograd adds the bias in its output transform; the direct lowerings after their GEMMs.
    if winogradFits(g, outChannels: o, dtype: dtype) {
      try winogradConvolution(
        x.pointer(Float.self), w.pointer(Float.self), bias: bias?.pointer(Float.self),
        y.pointer(Float.self), outChannels: o, g, backwardData: false)
      return
    }
    func run<T: CPUScalar>(_: T.Type) {
      let (px, pw, py) = (x.pointer(T.self), w.pointer(T.self), y.pointer(T.self))
      guard g.n > 0, o > 0 else { return }
      guard g.patch > 0 else {
        // BLAS would skip a product of depth 0 and leave y unwritten.
        py.update(repeating: 0, count: g.n * o * g.outH * g.outW)
        return
      }
      if Self.rowTapsFit(g) {
        let t = RowTaps(g, outChannels: o)
        let wr = Self.tapKernel(g, o, pw)
        defer { wr.deallocate() }
        Self.rowTapsForward(t, n: g.n, px, wr, py)
      } else {
        Self.im2colForward(g, o, px, pw, py)
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
    if let bias {
      try addChannelBias(bias, to: y, n: g.n, channels: o, plane: g.outH * g.outW, dtype: dtype)
    }
  }

  public func conv2dBackwardData(
    _ dy: DeviceBuffer, _ w: DeviceBuffer, _ dx: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    if winogradFits(g, outChannels: o, dtype: dtype) {
      try winogradConvolution(
        dy.pointer(Float.self), w.pointer(Float.self), bias: nil, dx.pointer(Float.self),
        outChannels: o, g, backwardData: true)
      return
    }
    func run<T: CPUScalar>(_: T.Type) {
      let (pdy, pw, pdx) = (dy.pointer(T.self), w.pointer(T.self), dx.pointer(T.self))
      guard g.n > 0, g.c > 0 else { return }
      guard o > 0, g.kh * g.kw > 0 else {
        pdx.update(repeating: 0, count: g.n * g.c * g.h * g.w)
        return
      }
      // With stride 1, dx is the convolution of dy with the kernel flipped in both axes and its
      // channel axes swapped, padded by k − 1 − p (which must not be negative): output size
      // Ho + k − 1 − 2p = H; its GEMMs have depth O·kw, as deep as the forward ones. But they
      // have only C rows, too few below about 24 channels, where the adjoint's C·kw rows (or
      // im2col's C·kh·kw) measure faster. A 1×1 kernel needs no expansion either way.
      let pointwise = g.kh == 1 && g.kw == 1
      if g.stride == 1 && g.pad < g.kh && g.pad < g.kw
        && (pointwise || (g.c >= 24 && o * g.kw >= 32))
      {
        let t = RowTaps(
          c: o, h: g.outH, w: g.outW, o: g.c, kh: g.kh, kw: g.kw, padH: g.kh - 1 - g.pad,
          padW: g.kw - 1 - g.pad, stride: 1)
        // wr[i][c][o·kw + j] = W[o, c, kh − 1 − i, kw − 1 − j].
        let wr = UnsafeMutablePointer<T>.allocate(capacity: o * g.patch)
        defer { wr.deallocate() }
        Self.repackKernel(g, o, from: pw, to: wr) { oc, c, i, j in
          ((g.kh - 1 - i) * g.c + c) * t.depth + oc * g.kw + (g.kw - 1 - j)
        }
        Self.rowTapsForward(t, n: g.n, pdy, wr, pdx)
      } else if Self.rowTapsFit(g) {
        let t = RowTaps(g, outChannels: o)
        let wr = Self.tapKernel(g, o, pw)
        defer { wr.deallocate() }
        Self.rowTapsBackwardData(t, n: g.n, pdy, wr, pdx)
      } else {
        Self.im2colBackwardData(g, o, pdy, pw, pdx)
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  public func conv2dBackwardWeights(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, _ dw: DeviceBuffer, bias dbias: DeviceBuffer?,
    outChannels o: Int, _ g: ConvGeometry, dtype: DType
  ) throws {
    try convolutionWeightGradient(dy, x, dw, outChannels: o, g, dtype: dtype)
    if let dbias {
      try convolutionBiasGradient(
        dy, dbias, n: g.n, channels: o, plane: g.outH * g.outW, dtype: dtype)
    }
  }

  private func convolutionWeightGradient(
    _ dy: DeviceBuffer, _ x: DeviceBuffer, _ dw: DeviceBuffer, outChannels o: Int,
    _ g: ConvGeometry, dtype: DType
  ) throws {
    if winogradFits(g, outChannels: o, dtype: dtype) {
      try winogradBackwardWeights(
        dy.pointer(Float.self), x.pointer(Float.self), dw.pointer(Float.self), outChannels: o, g)
      return
    }
    func run<T: CPUScalar>(_: T.Type) {
      let (pdy, px, pdw) = (dy.pointer(T.self), x.pointer(T.self), dw.pointer(T.self))
      guard o > 0, g.patch > 0 else { return }
      guard g.n > 0 else {
        pdw.update(repeating: 0, count: o * g.patch)
        return
      }
      if Self.rowTapsFit(g) {
        let t = RowTaps(g, outChannels: o)
        Self.rowTapsWeights(t, n: g.n, pdy, px, pdw)
      } else {
        Self.im2colBackwardWeights(g, o, pdy, px, pdw)
      }
    }
    dtype == .float32 ? run(Float.self) : run(Double.self)
  }

  /// Whether a convolution runs as row taps rather than im2col: when its GEMMs have depth C·kw
  /// of at least 32. Shallower row-tap GEMMs (a first layer on 1 to 8 input channels) run slower
  /// than one im2col GEMM of depth C·kh·kw, whose expansion is then small anyway. With kh = 1
  /// both lowerings make the same GEMMs and row taps skip the copy for 1×1 stride-1 kernels.
  static func rowTapsFit(_ g: ConvGeometry) -> Bool {
    g.kh == 1 || g.c * g.kw >= 32
  }

  /// The kernel w [O, C, kh, kw] in the row-tap layout wr[i][o][c·kw + j] = w[o, c, i, j]: one
  /// [O, C·kw] matrix per kernel row. The caller deallocates it.
  static func tapKernel<T: CPUScalar>(_ g: ConvGeometry, _ o: Int, _ w: UnsafePointer<T>)
    -> UnsafeMutablePointer<T>
  {
    let wr = UnsafeMutablePointer<T>.allocate(capacity: o * g.patch)
    let depth = g.c * g.kw
    repackKernel(g, o, from: w, to: wr) { oc, c, i, j in (i * o + oc) * depth + c * g.kw + j }
    return wr
  }

  /// to[index(o, c, i, j)] = w[o, c, i, j] for the kernel w [O, C, kh, kw], output channels
  /// spread over the cores (a serial copy would leave the other cores idle for a noticeable
  /// part of a small convolution).
  @inline(__always)
  static func repackKernel<T: CPUScalar>(
    _ g: ConvGeometry, _ o: Int, from w: UnsafePointer<T>, to: UnsafeMutablePointer<T>,
    _ index: (Int, Int, Int, Int) -> Int
  ) {
    parallelFor(o, grain: max(1, 16384 / g.patch)) { r in
      for oc in r {
        var at = w + oc * g.patch
        for c in 0..<g.c {
          for i in 0..<g.kh {
            for j in 0..<g.kw {
              to[index(oc, c, i, j)] = at.pointee
              at += 1
            }
          }
        }
      }
    }
  }

  // MARK: im2col lowering (few input channels; backward data with stride above 1)

  /// y = conv(x, w), a chunk of images per GEMM: [O, C·kh·kw] × cols [C·kh·kw, count·Ho·Wo].
  static func im2colForward<T: CPUScalar>(
    _ g: ConvGeometry, _ o: Int, _ x: UnsafePointer<T>, _ w: UnsafePointer<T>,
    _ y: UnsafeMutablePointer<T>
  ) {
    let plane = g.outH * g.outW
    let chunks = ImageChunks(n: g.n, plane: plane)
    let most = chunks.largest
    let colsCount = g.patch * most * plane
    let perWorker = colsCount + (most > 1 ? o * most * plane : 0)
    let scratch = UnsafeMutablePointer<T>.allocate(capacity: chunks.workers * perWorker)
    defer { scratch.deallocate() }
    forEachChunk(chunks) { images, worker in
      let cols = scratch + worker * perWorker
      let ld = images.count * plane
      im2colImages(g, x, images, cols)
      if images.count == 1 {
        T.gemm(
          false, false, o, ld, g.patch, 1, w, g.patch, cols, ld, 0,
          y + images.lowerBound * o * plane, ld)
        return
      }
      let tmp = cols + colsCount
      T.gemm(false, false, o, ld, g.patch, 1, w, g.patch, cols, ld, 0, tmp, ld)
      for (k, n) in images.enumerated() {
        for oc in 0..<o {
          (y + (n * o + oc) * plane).update(from: tmp + oc * ld + k * plane, count: plane)
        }
      }
    }
  }

  /// dx = col2im(Wᵀ · dy), a chunk of images per GEMM.
  static func im2colBackwardData<T: CPUScalar>(
    _ g: ConvGeometry, _ o: Int, _ dy: UnsafePointer<T>, _ w: UnsafePointer<T>,
    _ dx: UnsafeMutablePointer<T>
  ) {
    let plane = g.outH * g.outW
    let taps = g.kh * g.kw
    let chunks = ImageChunks(n: g.n, plane: plane)
    let most = chunks.largest
    let colsCount = g.patch * most * plane
    let perWorker = colsCount + (most > 1 ? o * most * plane : 0)
    let scratch = UnsafeMutablePointer<T>.allocate(capacity: chunks.workers * perWorker)
    defer { scratch.deallocate() }
    forEachChunk(chunks) { images, worker in
      let cols = scratch + worker * perWorker
      let ld = images.count * plane
      let b = gatherImages(dy, o, plane, images, cols + colsCount)
      T.gemm(true, false, g.patch, ld, o, 1, w, g.patch, b, ld, 0, cols, ld)
      for (k, n) in images.enumerated() {
        for c in 0..<g.c {
          col2imChannel(cols + c * taps * ld + k * plane, ld, g, dx + (n * g.c + c) * g.h * g.w)
        }
      }
    }
  }

  /// dw = Σₙ dyₙ · im2col(xₙ)ᵀ, a chunk of images per GEMM of depth count·Ho·Wo.
  static func im2colBackwardWeights<T: CPUScalar>(
    _ g: ConvGeometry, _ o: Int, _ dy: UnsafePointer<T>, _ x: UnsafePointer<T>,
    _ dw: UnsafeMutablePointer<T>
  ) {
    let plane = g.outH * g.outW
    let size = o * g.patch
    let chunks = ImageChunks(n: g.n, plane: plane)
    let most = chunks.largest
    let colsCount = g.patch * most * plane
    let perWorker = colsCount + (most > 1 ? o * most * plane : 0)
    let scratch = UnsafeMutablePointer<T>.allocate(capacity: chunks.workers * perWorker)
    defer { scratch.deallocate() }
    // One partial sum of dW per worker, added at the end: workers never share an output.
    let partials = UnsafeMutablePointer<T>.allocate(capacity: chunks.workers * size)
    defer { partials.deallocate() }
    // Whether each worker has started its partial (its first GEMM overwrites it, beta = 0).
    let started = UnsafeMutablePointer<Bool>.allocate(capacity: chunks.workers)
    defer { started.deallocate() }
    started.initialize(repeating: false, count: chunks.workers)
    forEachChunk(chunks, deterministic: true) { images, worker in
      let cols = scratch + worker * perWorker
      let ld = images.count * plane
      im2colImages(g, x, images, cols)
      let a = gatherImages(dy, o, plane, images, cols + colsCount)
      let beta: T = started[worker] ? 1 : 0
      started[worker] = true
      T.gemm(
        false, true, o, g.patch, ld, 1, a, ld, cols, ld, beta, partials + worker * size, g.patch)
    }
    let workers = chunks.workers
    parallelFor(size, grain: 1 << 14) { r in
      for i in r {
        var acc: T = 0
        for k in 0..<workers where started[k] { acc += partials[k * size + i] }
        dw[i] = acc
      }
    }
  }

  /// im2col of `images` side by side: cols [C·kh·kw, count·Ho·Wo], image k from column k·Ho·Wo.
  static func im2colImages<T: CPUScalar>(
    _ g: ConvGeometry, _ x: UnsafePointer<T>, _ images: Range<Int>,
    _ cols: UnsafeMutablePointer<T>
  ) {
    let plane = g.outH * g.outW
    let taps = g.kh * g.kw
    let ld = images.count * plane
    for (k, n) in images.enumerated() {
      for c in 0..<g.c {
        im2colChannel(x + (n * g.c + c) * g.h * g.w, g, cols + c * taps * ld + k * plane, ld)
      }
    }
  }

  /// The [channels, count·plane] matrix of `images` of an NCHW tensor: the tensor itself for one
  /// image, else gathered into `scratch`.
  static func gatherImages<T: CPUScalar>(
    _ t: UnsafePointer<T>, _ channels: Int, _ plane: Int, _ images: Range<Int>,
    _ scratch: UnsafeMutablePointer<T>
  ) -> UnsafePointer<T> {
    let first = t + images.lowerBound * channels * plane
    if images.count == 1 { return first }
    let ld = images.count * plane
    for k in 0..<images.count {
      for c in 0..<channels {
        (scratch + c * ld + k * plane).update(
          from: first + (k * channels + c) * plane, count: plane)
      }
    }
    return UnsafePointer(scratch)
  }

  // MARK: Scheduling

  /// Runs `body(images, worker)` for every chunk of `chunks` on `chunks.workers` workers, which
  /// take the next chunk as they finish the last: static halves would leave one core waiting
  /// whenever the other is slowed by unrelated work. `worker` indexes per-worker scratch.
  ///
  /// With `deterministic`, worker w takes the fixed run of chunks w·count/workers ..<
  /// (w+1)·count/workers in order instead. The weight gradients sum per-worker partials, and only
  /// a fixed assignment makes their rounding, and so a resumed training run, reproducible.
  static func forEachChunk(
    _ chunks: ImageChunks, deterministic: Bool = false, _ body: (Range<Int>, Int) -> Void
  ) {
    let workers = chunks.workers
    if deterministic {
      parallelFor(workers, grain: 1) { r in
        for worker in r {
          for k in (worker * chunks.count / workers)..<((worker + 1) * chunks.count / workers) {
            body(chunks[k], worker)
          }
        }
      }
      return
    }
    // A lock taken once per chunk (tens of chunks of ~0.1 ms each) costs nothing measurable.
    let lock = NSLock()
    var next = 0
    parallelFor(workers, grain: 1) { r in
      for worker in r {
        while true {
          let k = lock.withLock {
            defer { next += 1 }
            return next
          }
          if k >= chunks.count { break }
          body(chunks[k], worker)
        }
      }
    }
  }
}

/// A batch of n images split into `count` runs of consecutive images, sizes differing by at most
/// one.
struct ImageChunks {
  let n: Int
  let count: Int

  /// One image per chunk when a feature map has at least 128 positions: a GEMM that wide runs near
  /// OpenBLAS's peak and writes its output in place. Smaller maps take about 256 / (Ho·Wo) images
  /// per chunk, so that each GEMM is about 256 columns wide, in a whole number of chunks per core
  /// so that the cores finish together.
  init(n: Int, plane: Int) {
    if plane >= 128 || n <= 1 {
      self.init(n: n, count: n)
      return
    }
    self.init(n: n, imagesPerChunk: max(1, 256 / max(1, plane)))
  }

  /// About `target` images per chunk, in a whole number of chunks per core.
  init(n: Int, imagesPerChunk target: Int) {
    let workers = max(1, min(hostCores, n))
    let perWorker = max(1, Int((Double(n) / Double(workers * target)).rounded()))
    self.init(n: n, count: min(n, workers * perWorker))
  }

  /// At most `limit` images per chunk, in a whole number of chunks per core.
  init(n: Int, atMost limit: Int) {
    let workers = max(1, min(hostCores, n))
    let needed = (n + limit - 1) / limit
    self.init(n: n, count: min(n, (needed + workers - 1) / workers * workers))
  }

  private init(n: Int, count: Int) {
    self.n = n
    self.count = count
  }

  subscript(k: Int) -> Range<Int> { (k * n / count)..<((k + 1) * n / count) }
  /// The most images in one chunk.
  var largest: Int { (n + count - 1) / count }
  var workers: Int { min(hostCores, count) }
}
