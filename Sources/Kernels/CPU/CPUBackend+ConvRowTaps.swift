/// A convolution lowered to "row taps": instead of im2col's kh·kw shifted copies of the input,
/// the input is expanded only along the kernel's width, with its padded rows r = s·u + a grouped
/// by phase a = r mod s,
///
///     E[(c·kw + j), a, u, x] = x[c, s·u + a − padH, s·x + j − padW]   (0 outside),
///
/// and the kernel's height becomes kh accumulating GEMMs: output row y of kernel row i = s·i′ + a
/// reads padded row s·(y + i′) + a, which is row y + i′ of phase a, so for every i the operand
/// is E advanced to row i′ of phase a, a [C·kw, Ho·Wo] matrix with row stride `planeStride`:
///
///     y[o, :] = Σᵢ Wᵢ[o, (c, j)] · E[(c, j), a, i′ ..< i′ + Ho, :].
///
/// With stride 1 there is one phase and E is the padded input shifted by each j. The expansion
/// is about s/kh of an im2col's size (a third for 3×3 stride 1, half for 4×4 stride 2), small
/// enough to stay in a core's L2 cache beside OpenBLAS's packed panels, and each GEMM has depth
/// C·kw (192 for 64 channels and kw = 3), deep enough for OpenBLAS to run near its peak.
///
/// Small feature maps interleave the rows of `count` images, E[(c, j), a, u, image, x], so that
/// one GEMM spans Ho·count·Wo columns: the rows move together and the tap offsets still apply.
struct RowTaps {
  /// Input channels, height and width.
  var c: Int, h: Int, w: Int
  /// Output channels.
  var o: Int
  var kh: Int, kw: Int
  /// Zero padding above and below, left and right.
  var padH: Int, padW: Int
  var stride: Int

  /// The taps of the convolution `g` itself, with `o` output channels.
  init(_ g: ConvGeometry, outChannels o: Int) {
    self.init(
      c: g.c, h: g.h, w: g.w, o: o, kh: g.kh, kw: g.kw, padH: g.pad, padW: g.pad, stride: g.stride)
  }

  init(c: Int, h: Int, w: Int, o: Int, kh: Int, kw: Int, padH: Int, padW: Int, stride: Int) {
    (self.c, self.h, self.w, self.o) = (c, h, w, o)
    (self.kh, self.kw, self.padH, self.padW, self.stride) = (kh, kw, padH, padW, stride)
  }

  var outH: Int { (h + 2 * padH - kh) / stride + 1 }
  var outW: Int { (w + 2 * padW - kw) / stride + 1 }
  var plane: Int { outH * outW }
  /// GEMM depth of one tap row: the (channel, kernel column) pairs.
  var depth: Int { c * kw }
  /// Rows of one phase that the taps read: Ho plus the largest row offset i′.
  var phaseRows: Int { outH + (kh - 1) / stride }
  /// Elements between the expansions of two (channel, kernel column) pairs for `count` images.
  func planeStride(_ count: Int) -> Int { stride * phaseRows * count * outW }
  /// Where the operand of kernel row i starts in an expansion of `count` images.
  func tapOffset(_ i: Int, _ count: Int) -> Int {
    ((i % stride) * phaseRows + i / stride) * count * outW
  }
  /// A 1×1 kernel with stride 1 and no padding reads the input as it is: no expansion needed
  /// for one image.
  var isPointwise: Bool { kh == 1 && kw == 1 && padH == 0 && padW == 0 && stride == 1 }
}

extension CPUBackend {
  /// Writes the row-tap expansion of `count` images (image k at `x + k·imageStride`, [C, H, W])
  /// into `e`: e[(c·kw + j)·planeStride + (a·phaseRows + u)·rowStride + k·Wo + x], rowStride =
  /// count·Wo, padding 0. With `clean`, `e` already holds an expansion for the same `count` and
  /// only the data are written (the padding is never overwritten); otherwise `e` is zeroed first.
  static func expandRows<T: CPUScalar>(
    _ t: RowTaps, _ x: UnsafePointer<T>, imageStride: Int, count: Int,
    _ e: UnsafeMutablePointer<T>, clean: Bool
  ) {
    let (ow, s) = (t.outW, t.stride)
    let rows = t.phaseRows
    let rowStride = count * ow
    let planeStride = t.planeStride(count)
    // Padding is never written below, so one zeroing serves all chunks of the same layout.
    if !clean { e.update(repeating: 0, count: t.depth * planeStride) }
    // Rows as wide as the input, stride 1, one image: expanded row u is input row u − padH
    // shifted by j − padW, so a whole plane is one contiguous copy whose few entries that wrap
    // around a row edge are zeroed afterwards.
    let contiguous = s == 1 && count == 1 && ow == t.w
    // Channel by channel, its images inside: the kw expanded planes of one channel (a few KB
    // for small maps) stay in L1 while every image's plane of that channel is copied in.
    for c in 0..<t.c {
      for k in 0..<count {
        let src = x + k * imageStride + c * t.h * t.w
        for j in 0..<t.kw {
          let d = e + (c * t.kw + j) * planeStride + k * ow
          // Output columns q whose input column s·q + shift lies inside the image.
          let shift = j - t.padW
          let lo = min(ow, shift >= 0 ? 0 : (s - 1 - shift) / s)
          let top = t.w - 1 - shift
          let hi = max(lo, top < 0 ? 0 : min(ow, top / s + 1))
          guard lo < hi else { continue }
          if contiguous {
            let body = d + t.padH * ow
            (body + lo).update(from: src + lo + shift, count: (t.h - 1) * ow + hi - lo)
            // Column by column: a strided loop of single stores, where a row by row loop
            // would become a memset call per row for one or two elements.
            for q in 0..<lo { zeroColumn(body + q, stride: ow, count: t.h) }
            for q in hi..<ow { zeroColumn(body + q, stride: ow, count: t.h) }
            continue
          }
          if s == 1 {
            // Input row r is expanded row r + padH.
            for r in 0..<t.h {
              copyRun(d + (r + t.padH) * rowStride + lo, src + r * t.w + shift + lo, hi - lo)
            }
            continue
          }
          // Input row r is padded row r + padH: phase (r + padH) mod s, row (r + padH) / s;
          // the last few rows of a large stride may be read by no tap and have no place.
          for r in 0..<t.h where (r + t.padH) / s < rows {
            let padded = r + t.padH
            let to = d + ((padded % s) * rows + padded / s) * rowStride
            let from = src + r * t.w + shift
            for q in lo..<hi { to[q] = from[q * s] }
          }
        }
      }
    }
  }

  /// Copies `count` elements between non-overlapping runs. Runs of up to 64 bytes (the rows of
  /// small feature maps) are copied with two to four possibly overlapping vector moves instead
  /// of a call to memcpy, whose fixed cost would exceed the copy.
  @inline(__always)
  static func copyRun<T>(_ d: UnsafeMutablePointer<T>, _ s: UnsafePointer<T>, _ count: Int) {
    let bytes = count * MemoryLayout<T>.stride
    guard bytes <= 64 else {
      d.update(from: s, count: count)
      return
    }
    let (to, from) = (UnsafeMutableRawPointer(d), UnsafeRawPointer(s))
    // Bytes [start, start + length), 1 to 2 pieces of V long, as its first and last piece.
    @inline(__always) func ends<V>(_: V.Type, _ start: Int, _ length: Int) {
      let last = start + length - MemoryLayout<V>.size
      let (a, b) = (
        from.loadUnaligned(fromByteOffset: start, as: V.self),
        from.loadUnaligned(fromByteOffset: last, as: V.self)
      )
      to.storeBytes(of: a, toByteOffset: start, as: V.self)
      to.storeBytes(of: b, toByteOffset: last, as: V.self)
    }
    typealias V16 = SIMD4<UInt32>
    switch bytes {
    case 32...:
      ends(V16.self, 0, 32)
      ends(V16.self, bytes - 32, 32)
    case 16...: ends(V16.self, 0, bytes)
    case 8...: ends(UInt64.self, 0, bytes)
    case 4...: ends(UInt32.self, 0, bytes)
    default: break
    }
  }

  /// Zeroes `count` elements `stride` apart.
  @inline(__always)
  static func zeroColumn<T: CPUScalar>(_ p: UnsafeMutablePointer<T>, stride: Int, count: Int) {
    for r in 0..<count { p[r * stride] = 0 }
  }

  /// y [N, O, Ho, Wo] = the convolution `t` of x [N, C, H, W] with the kernel repacked
  /// as wr[i][o][c·kw + j] (= W[o, c, i, j] for a forward convolution).
  static func rowTapsForward<T: CPUScalar>(
    _ t: RowTaps, n: Int, _ x: UnsafePointer<T>, _ wr: UnsafePointer<T>,
    _ y: UnsafeMutablePointer<T>
  ) {
    let plane = t.plane
    let chunks = ImageChunks(n: n, plane: plane)
    let most = chunks.largest
    let pointwise = t.isPointwise && most == 1
    let expanded = pointwise ? 0 : t.depth * t.planeStride(most)
    let perWorker = expanded + (most > 1 ? t.o * most * plane : 0)
    let scratch = UnsafeMutablePointer<T>.allocate(capacity: max(1, chunks.workers * perWorker))
    defer { scratch.deallocate() }
    // The image count each worker's expansion is laid out for (0: none yet): its padding stays
    // zero from one chunk to the next of the same count.
    let laidOut = UnsafeMutablePointer<Int>.allocate(capacity: chunks.workers)
    defer { laidOut.deallocate() }
    laidOut.initialize(repeating: 0, count: chunks.workers)
    forEachChunk(chunks) { images, worker in
      let count = images.count
      let e = scratch + worker * perWorker
      let src = x + images.lowerBound * t.c * t.h * t.w
      let rowStride = count * t.outW
      let columns = t.outH * rowStride
      let b = pointwise ? UnsafeMutablePointer(mutating: src) : e
      let planeStride = pointwise ? t.h * t.w : t.planeStride(count)
      if !pointwise {
        expandRows(
          t, src, imageStride: t.c * t.h * t.w, count: count, e, clean: laidOut[worker] == count)
        laidOut[worker] = count
      }
      // One image writes its output in place; interleaved images go through a scratch matrix
      // [O, Ho, count, Wo] scattered to NCHW below (it is small and still in cache).
      let tmp = e + expanded
      let out = count == 1 ? y + images.lowerBound * t.o * plane : tmp
      for i in 0..<t.kh {
        T.gemm(
          false, false, t.o, columns, t.depth, 1, wr + i * t.o * t.depth, t.depth,
          b + t.tapOffset(i, count), planeStride, i == 0 ? 0 : 1, out, columns)
      }
      if count > 1 {
        for k in 0..<count {
          for oc in 0..<t.o {
            let to = y + ((images.lowerBound + k) * t.o + oc) * plane
            let from = tmp + oc * columns + k * t.outW
            for r in 0..<t.outH { copyRun(to + r * t.outW, from + r * rowStride, t.outW) }
          }
        }
      }
    }
  }

  /// dy [O, Ho·Wo] of `images` as the GEMM operand [O, Ho, count, Wo] of an expansion of their
  /// rows: dy itself for one image, else interleaved into `scratch`.
  static func interleaveOutputs<T: CPUScalar>(
    _ t: RowTaps, _ dy: UnsafePointer<T>, _ images: Range<Int>, _ scratch: UnsafeMutablePointer<T>
  ) -> UnsafePointer<T> {
    let first = dy + images.lowerBound * t.o * t.plane
    let count = images.count
    if count == 1 { return first }
    let rowStride = count * t.outW
    for k in 0..<count {
      for oc in 0..<t.o {
        let from = first + (k * t.o + oc) * t.plane
        let to = scratch + oc * t.outH * rowStride + k * t.outW
        for r in 0..<t.outH { copyRun(to + r * rowStride, from + r * t.outW, t.outW) }
      }
    }
    return UnsafePointer(scratch)
  }

  /// dx [N, C, H, W] (overwritten) = the adjoint in x of the convolution `t` applied to
  /// dy [N, O, Ho, Wo], the kernel repacked as for `rowTapsForward`: the expansion's gradient
  /// dE = Σᵢ Wᵢᵀ · dy (each tap accumulating into its rows of dE) folded back onto dx along the
  /// kernel's width only, the adjoint of `expandRows`.
  static func rowTapsBackwardData<T: CPUScalar>(
    _ t: RowTaps, n: Int, _ dy: UnsafePointer<T>, _ wr: UnsafePointer<T>,
    _ dx: UnsafeMutablePointer<T>
  ) {
    let plane = t.plane
    let chunks = ImageChunks(n: n, plane: plane)
    let most = chunks.largest
    let expanded = t.depth * t.planeStride(most)
    let perWorker = expanded + (most > 1 ? t.o * most * plane : 0)
    let scratch = UnsafeMutablePointer<T>.allocate(capacity: max(1, chunks.workers * perWorker))
    defer { scratch.deallocate() }
    forEachChunk(chunks) { images, worker in
      let count = images.count
      let de = scratch + worker * perWorker
      let columns = t.outH * count * t.outW
      let planeStride = t.planeStride(count)
      let g = interleaveOutputs(t, dy, images, de + expanded)
      // The taps' row ranges overlap, so all accumulate into a zeroed dE.
      de.update(repeating: 0, count: t.depth * planeStride)
      for i in 0..<t.kh {
        T.gemm(
          true, false, t.depth, columns, t.o, 1, wr + i * t.o * t.depth, t.depth, g, columns, 1,
          de + t.tapOffset(i, count), planeStride)
      }
      foldRows(t, de, count: count, dx + images.lowerBound * t.c * t.h * t.w)
    }
  }

  /// The adjoint of `expandRows`: x (overwritten) [count, C, H, W] = Σ of the entries of the
  /// expansion `e` of `count` images that were copied from each element (padding dropped).
  static func foldRows<T: CPUScalar>(
    _ t: RowTaps, _ e: UnsafePointer<T>, count: Int, _ x: UnsafeMutablePointer<T>
  ) {
    let (ow, s) = (t.outW, t.stride)
    let rows = t.phaseRows
    let rowStride = count * ow
    let planeStride = t.planeStride(count)
    let imageSize = t.c * t.h * t.w
    x.update(repeating: 0, count: count * imageSize)
    for c in 0..<t.c {
      for j in 0..<t.kw {
        let d = e + (c * t.kw + j) * planeStride
        let shift = j - t.padW
        let lo = min(ow, shift >= 0 ? 0 : (s - 1 - shift) / s)
        let top = t.w - 1 - shift
        let hi = max(lo, top < 0 ? 0 : min(ow, top / s + 1))
        guard lo < hi else { continue }
        for a in 0..<s {
          for u in 0..<rows {
            let r = s * u + a - t.padH
            if r < 0 || r >= t.h { continue }
            let row = d + (a * rows + u) * rowStride
            for k in 0..<count {
              let from = row + k * ow
              let to = x + k * imageSize + (c * t.h + r) * t.w + shift
              if s == 1 {
                for q in lo..<hi { to[q] += from[q] }
              } else {
                for q in lo..<hi { to[q * s] += from[q] }
              }
            }
          }
        }
      }
    }
  }

  /// dw [O, C, kh, kw] (overwritten) = the kernel gradient of the convolution `t` for
  /// x [N, C, H, W] and dy [N, O, Ho, Wo].
  static func rowTapsWeights<T: CPUScalar>(
    _ t: RowTaps, n: Int, _ dy: UnsafePointer<T>, _ x: UnsafePointer<T>,
    _ dw: UnsafeMutablePointer<T>
  ) {
    let plane = t.plane
    let chunks = ImageChunks(n: n, plane: plane)
    let most = chunks.largest
    let pointwise = t.isPointwise && most == 1
    let expanded = pointwise ? 0 : t.depth * t.planeStride(most)
    // Each worker accumulates its images into its own partial gradient, in the tap layout
    // part[i][c·kw + j][o], summed at the end: workers never share an output.
    let size = t.kh * t.depth * t.o
    let perWorker = expanded + (most > 1 ? t.o * most * plane : 0)
    let partials = UnsafeMutablePointer<T>.allocate(capacity: max(1, chunks.workers * size))
    defer { partials.deallocate() }
    // Whether each worker has started its partial (its first GEMMs overwrite it, beta = 0).
    let started = UnsafeMutablePointer<Bool>.allocate(capacity: chunks.workers)
    defer { started.deallocate() }
    started.initialize(repeating: false, count: chunks.workers)
    let scratch = UnsafeMutablePointer<T>.allocate(capacity: max(1, chunks.workers * perWorker))
    defer { scratch.deallocate() }
    // The image count each worker's expansion is laid out for (0: none yet): its padding stays
    // zero from one chunk to the next of the same count.
    let laidOut = UnsafeMutablePointer<Int>.allocate(capacity: chunks.workers)
    defer { laidOut.deallocate() }
    laidOut.initialize(repeating: 0, count: chunks.workers)
    forEachChunk(chunks, deterministic: true) { images, worker in
      let count = images.count
      let e = scratch + worker * perWorker
      let src = x + images.lowerBound * t.c * t.h * t.w
      let rowStride = count * t.outW
      let columns = t.outH * rowStride
      let b = pointwise ? UnsafeMutablePointer(mutating: src) : e
      let planeStride = pointwise ? t.h * t.w : t.planeStride(count)
      if !pointwise {
        expandRows(
          t, src, imageStride: t.c * t.h * t.w, count: count, e, clean: laidOut[worker] == count)
        laidOut[worker] = count
      }
      let g = interleaveOutputs(t, dy, images, e + expanded)
      // dWᵢᵀ [(c, j), O] += Eᵢ · dyᵀ (as fast as dWᵢ += dy · Eᵢᵀ in measurements), one
      // [depth, O] block of the partial per kernel row.
      let part = partials + worker * size
      let beta: T = started[worker] ? 1 : 0
      started[worker] = true
      for i in 0..<t.kh {
        T.gemm(
          false, true, t.depth, t.o, columns, 1, b + t.tapOffset(i, count), planeStride, g,
          columns, beta, part + i * t.depth * t.o, t.o)
      }
    }
    let workers = chunks.workers
    parallelFor(t.o, grain: max(1, 8192 / max(1, size / max(1, t.o)))) { r in
      for oc in r {
        for c in 0..<t.c {
          for i in 0..<t.kh {
            for j in 0..<t.kw {
              let at = (i * t.depth + c * t.kw + j) * t.o + oc
              var acc: T = 0
              for k in 0..<workers where started[k] { acc += partials[k * size + at] }
              dw[((oc * t.c + c) * t.kh + i) * t.kw + j] = acc
            }
          }
        }
      }
    }
  }
}
