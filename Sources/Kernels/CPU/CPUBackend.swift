import CBLAS
import CSmallGEMM
import CVectorMath
import Foundation
import RealModule

/// The host backend: OpenBLAS for matrix products and convolution (im2col + GEMM), Swift loops
/// spread over the cores for everything else. Float32 and Float64.
///
/// Every operation completes before it returns, so the backend holds no mutable state besides its
/// pool (which locks), and is safe to share.
public final class CPUBackend: Backend {
  public let pool: BufferPool
  public let name: String
  /// Whether 3×3 stride-1 float32 convolutions run by Winograd (needs AVX2 and FMA).
  public let usesWinograd: Bool
  /// Whether Winograd runs as F(4×4, 3×3) with AVX-512; else F(2×2, 3×3) with AVX2.
  public let usesAVX512: Bool

  /// - Parameters:
  ///   - winograd: run 3×3 stride-1 float32 convolutions by Winograd where the CPU can; false
  ///     keeps every convolution on the direct lowerings (to compare the two).
  ///   - avx512: use the AVX-512 kernels where the CPU has them; false keeps the AVX2 ones (to
  ///     test and compare both on one machine).
  public init(winograd: Bool = true, avx512: Bool = true) {
    usesWinograd = winograd && Self.winogradAvailable
    usesAVX512 = usesWinograd && avx512 && Self.wideWinogradAvailable
    pool = BufferPool(
      allocate: { bytes in
        guard let p = alignedAllocate(bytes) else {
          throw BackendError.outOfMemory(bytes: bytes, device: "host")
        }
        return .host(p)
      },
      free: { free($0.host) })
    name =
      "cpu (OpenBLAS \(OpenBLASCore.name), \(hostCores) threads"
      + (usesWinograd ? "" : ", direct conv") + (usesWinograd && !usesAVX512 ? ", AVX2" : "") + ")"
    // This backend parallelises itself (panels of large GEMMs, images of a convolution); OpenBLAS's
    // own threads would oversubscribe the cores when called from those workers.
    openblas_set_num_threads(1)
  }

  public func supports(_ dtype: DType) -> Bool { true }

  public func write(_ bytes: UnsafeRawBufferPointer, to buffer: DeviceBuffer) throws {
    precondition(bytes.count <= buffer.byteCount)
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    buffer.allocation.host.copyMemory(from: base, byteCount: bytes.count)
  }

  public func read(_ buffer: DeviceBuffer, into bytes: UnsafeMutableRawBufferPointer) throws {
    precondition(bytes.count <= buffer.byteCount)
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    base.copyMemory(from: buffer.allocation.host, byteCount: bytes.count)
  }

  public func synchronize() throws {}
}

/// 64-byte aligned host memory, so vector loads never straddle cache lines.
private func alignedAllocate(_ bytes: Int) -> UnsafeMutableRawPointer? {
  var p: UnsafeMutableRawPointer?
  guard posix_memalign(&p, 64, max(64, bytes)) == 0 else { return nil }
  return p
}

/// The element types the CPU backend computes in, with their BLAS entry points.
protocol CPUScalar: Real, BinaryFloatingPoint, SIMDScalar {
  /// tanh, by a vectorisable formula where one is accurate enough.
  static func fastTanh(_ x: Self) -> Self
  /// eˣ, likewise (the derivatives of tanh and sigmoid are made of it).
  static func fastExp(_ x: Self) -> Self
  static func gemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Self,
    _ a: UnsafePointer<Self>, _ lda: Int, _ b: UnsafePointer<Self>, _ ldb: Int, _ beta: Self,
    _ c: UnsafeMutablePointer<Self>, _ ldc: Int)
  /// A product of at most `CPUBackend.smallGEMMVolume` multiply-adds by vector code where this
  /// type and CPU have some (false: the caller runs its portable loops instead).
  static func vectorisedSmallGEMM(
    _ p: GEMMShape, _ a: UnsafeMutablePointer<Self>, _ b: UnsafeMutablePointer<Self>,
    _ c: UnsafeMutablePointer<Self>
  ) -> Bool
  /// y = tanh(x) over `count` elements by vector code where this type and CPU have some (false:
  /// the caller runs `fastTanh` in a loop instead).
  static func vectorisedTanh(
    _ x: UnsafeMutablePointer<Self>, _ y: UnsafeMutablePointer<Self>, _ count: Int
  ) -> Bool
  /// dx = dy·tanh'(x) likewise.
  static func vectorisedTanhGradient(
    _ x: UnsafeMutablePointer<Self>, _ dy: UnsafeMutablePointer<Self>,
    _ dx: UnsafeMutablePointer<Self>, _ count: Int
  ) -> Bool
  /// `CPUBackend.groupNorm`'s pass (forward, input gradient or parameter gradients) over
  /// `range` (of image-group pairs, or of channels for `.parameters`) by vector code where this
  /// type and CPU have some (false: the caller runs its loops instead).
  static func vectorisedGroupNorm(
    _ pass: GroupNormPass<Self>, _ s: GroupNormShape, _ range: Range<Int>
  ) -> Bool
  /// `CPUBackend.batchNorm`'s forward or backward pass over the channels in `range` by vector
  /// code where this type and CPU have some (false: the caller runs its loops instead).
  static func vectorisedBatchNorm(
    _ pass: BatchNormPass<Self>, _ s: BatchNormShape, _ range: Range<Int>
  ) -> Bool
}

/// One pass of batch normalisation over its arrays (see `CPUBackend.batchNorm`); `relu` is the
/// fused ReLU's output, nil without one.
enum BatchNormPass<T> {
  case forward(
    x: UnsafeMutablePointer<T>, gamma: UnsafeMutablePointer<T>, beta: UnsafeMutablePointer<T>,
    y: UnsafeMutablePointer<T>, mean: UnsafeMutablePointer<T>,
    variance: UnsafeMutablePointer<T>, relu: Bool)
  case gradient(
    x: UnsafeMutablePointer<T>, gamma: UnsafeMutablePointer<T>, mean: UnsafeMutablePointer<T>,
    variance: UnsafeMutablePointer<T>, relu: UnsafeMutablePointer<T>?,
    dy: UnsafeMutablePointer<T>, dx: UnsafeMutablePointer<T>, dgamma: UnsafeMutablePointer<T>,
    dbeta: UnsafeMutablePointer<T>, batchStatistics: Bool)
}

/// One pass of group normalisation over its arrays (see `CPUBackend.groupNorm`).
enum GroupNormPass<T> {
  case forward(
    x: UnsafeMutablePointer<T>, gamma: UnsafeMutablePointer<T>, beta: UnsafeMutablePointer<T>,
    y: UnsafeMutablePointer<T>, mean: UnsafeMutablePointer<T>, rstd: UnsafeMutablePointer<T>)
  case input(
    x: UnsafeMutablePointer<T>, gamma: UnsafeMutablePointer<T>, mean: UnsafeMutablePointer<T>,
    rstd: UnsafeMutablePointer<T>, dy: UnsafeMutablePointer<T>, dx: UnsafeMutablePointer<T>)
  case parameters(
    x: UnsafeMutablePointer<T>, mean: UnsafeMutablePointer<T>, rstd: UnsafeMutablePointer<T>,
    dy: UnsafeMutablePointer<T>, dgamma: UnsafeMutablePointer<T>, dbeta: UnsafeMutablePointer<T>)
}

/// Read once: the CPU does not change under a running process.
private let smallSGEMMAvailable = diffeqnet_small_gemm_available() != 0
private let vectorMathAvailable = diffeqnet_vector_math_available() != 0

extension Float: CPUScalar {
  /// CVectorMath's AVX2 + FMA loops: `fastTanh` and the derivative's `fastExp`, 8 lanes wide.
  static func vectorisedTanh(
    _ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int
  ) -> Bool {
    guard vectorMathAvailable else { return false }
    diffeqnet_tanh(x, y, count)
    return true
  }

  static func vectorisedTanhGradient(
    _ x: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>,
    _ dx: UnsafeMutablePointer<Float>, _ count: Int
  ) -> Bool {
    guard vectorMathAvailable else { return false }
    diffeqnet_tanh_gradient(x, dy, dx, count)
    return true
  }

  /// CVectorMath's AVX2 + FMA group norm: 8 lanes, four accumulators per sum.
  static func vectorisedGroupNorm(
    _ pass: GroupNormPass<Float>, _ s: GroupNormShape, _ range: Range<Int>
  ) -> Bool {
    guard vectorMathAvailable else { return false }
    let (groups, perGroup, hw) = (Int32(s.groups), Int32(s.c / s.groups), Int32(s.hw))
    let (first, count) = (Int32(range.lowerBound), Int32(range.count))
    switch pass {
    case .forward(let x, let gamma, let beta, let y, let mean, let rstd):
      diffeqnet_group_norm(
        x, gamma, beta, y, mean, rstd, groups, perGroup, hw, Float(s.eps), first, count)
    case .input(let x, let gamma, let mean, let rstd, let dy, let dx):
      diffeqnet_group_norm_grad_input(
        x, gamma, mean, rstd, dy, dx, groups, perGroup, hw, first, count)
    case .parameters(let x, let mean, let rstd, let dy, let dgamma, let dbeta):
      diffeqnet_group_norm_grad_params(
        x, mean, rstd, dy, dgamma, dbeta, Int32(s.n), Int32(s.c), groups, hw, first, count)
    }
    return true
  }

  /// CVectorMath's AVX2 + FMA batch norm: 8 lanes, the backward pass's ReLU mask in registers.
  static func vectorisedBatchNorm(
    _ pass: BatchNormPass<Float>, _ s: BatchNormShape, _ range: Range<Int>
  ) -> Bool {
    guard vectorMathAvailable else { return false }
    let (n, c, hw) = (Int32(s.n), Int32(s.c), Int32(s.hw))
    let (first, count) = (Int32(range.lowerBound), Int32(range.count))
    switch pass {
    case .forward(let x, let gamma, let beta, let y, let mean, let variance, let relu):
      diffeqnet_batch_norm(
        x, gamma, beta, y, mean, variance, n, c, hw, Float(s.eps), relu ? 1 : 0, first, count)
    case .gradient(
      let x, let gamma, let mean, let variance, let relu, let dy, let dx, let dgamma, let dbeta,
      let batchStatistics):
      diffeqnet_batch_norm_grad(
        x, gamma, mean, variance, relu, dy, dx, dgamma, dbeta, n, c, hw, Float(s.eps),
        batchStatistics ? 1 : 0, first, count)
    }
    return true
  }

  /// CSmallGEMM's AVX2 + FMA kernel: `CPUBackend.smallGEMM`'s three forms, 8 lanes wide with
  /// fused multiply-adds, in one C call (small layers make several products per op).
  static func vectorisedSmallGEMM(
    _ p: GEMMShape, _ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>,
    _ c: UnsafeMutablePointer<Float>
  ) -> Bool {
    guard smallSGEMMAvailable else { return false }
    let scratch = diffeqnet_small_gemm_scratch_count(Int32(p.n), Int32(p.k))
    withUnsafeTemporaryAllocation(of: Float.self, capacity: scratch) { s in
      diffeqnet_small_sgemm(
        p.transA ? 1 : 0, p.transB ? 1 : 0, Int32(p.m), Int32(p.n), Int32(p.k), Float(p.alpha),
        a, Int32(p.lda), b, Int32(p.ldb), Float(p.beta), c, Int32(p.ldc), s.baseAddress!)
    }
    return true
  }

  /// Eigen's rational minimax approximation (degree 13/6), accurate to a few ulps: unlike libm's
  /// tanhf it has no branches or calls, so whole loops vectorise — tanh dominates small MLP
  /// vector fields.
  @inline(__always)
  static func fastTanh(_ v: Float) -> Float {
    let x = Swift.min(Swift.max(v, -7.90531110763549805), 7.90531110763549805)
    let x2 = x * x
    var p: Float = -2.76076847742355e-16
    p = p * x2 + 2.00018790482477e-13
    p = p * x2 - 8.60467152213735e-11
    p = p * x2 + 5.12229709037114e-08
    p = p * x2 + 1.48572235717979e-05
    p = p * x2 + 6.37261928875436e-04
    p = p * x2 + 4.89352455891786e-03
    var q: Float = 1.19825839466702e-06
    q = q * x2 + 1.18534705686654e-04
    q = q * x2 + 2.26843463243900e-03
    q = q * x2 + 4.89352518554385e-03
    let t = x * p / q
    return Swift.abs(v) < 0.0004 ? v : t
  }

  /// Cephes' expf: eˣ = 2ⁿ·eʳ with n = round(x/ln 2) and a degree-6 polynomial for eʳ on
  /// |r| ≤ ln 2 / 2, accurate to about 2 ulps. Rounding by the 1.5·2²³ trick and building 2ⁿ
  /// from its bits keep the loop free of calls, so it vectorises. Inputs are clamped to the
  /// normal range (eˣ underflows to about 1e-38 instead of a subnormal).
  @inline(__always)
  static func fastExp(_ v: Float) -> Float {
    let x = Swift.min(Swift.max(v, -87.3), 88.3)
    let magic: Float = 12_582_912  // 1.5·2²³: adding it rounds to an integer
    let shifted = x * 1.44269504088896341 + magic
    let n = shifted - magic
    let r = (x - n * 0.693359375) - n * -2.12194440e-4
    var p: Float = 1.9875691500e-4
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let er = p * r * r + r + 1
    // n sits in the low mantissa bits of `shifted`; integer arithmetic (unlike a checked
    // Float-to-Int conversion) keeps the loop vectorisable.
    let twoToN = Float(bitPattern: (shifted.bitPattern &- magic.bitPattern &+ 127) &<< 23)
    return er * twoToN
  }

  static func gemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int
  ) {
    cblas_sgemm(
      CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
      Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }
}

extension Double: CPUScalar {
  // No vector kernels: float64 (gradient checks) runs the portable loops.
  static func vectorisedSmallGEMM(
    _ p: GEMMShape, _ a: UnsafeMutablePointer<Double>, _ b: UnsafeMutablePointer<Double>,
    _ c: UnsafeMutablePointer<Double>
  ) -> Bool { false }

  static func vectorisedTanh(
    _ x: UnsafeMutablePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ count: Int
  ) -> Bool { false }

  static func vectorisedTanhGradient(
    _ x: UnsafeMutablePointer<Double>, _ dy: UnsafeMutablePointer<Double>,
    _ dx: UnsafeMutablePointer<Double>, _ count: Int
  ) -> Bool { false }

  static func vectorisedGroupNorm(
    _ pass: GroupNormPass<Double>, _ s: GroupNormShape, _ range: Range<Int>
  ) -> Bool { false }

  static func vectorisedBatchNorm(
    _ pass: BatchNormPass<Double>, _ s: BatchNormShape, _ range: Range<Int>
  ) -> Bool { false }

  @inline(__always) static func fastTanh(_ v: Double) -> Double { Double.tanh(v) }
  @inline(__always) static func fastExp(_ v: Double) -> Double { Double.exp(v) }

  static func gemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Double,
    _ a: UnsafePointer<Double>, _ lda: Int, _ b: UnsafePointer<Double>, _ ldb: Int,
    _ beta: Double, _ c: UnsafeMutablePointer<Double>, _ ldc: Int
  ) {
    cblas_dgemm(
      CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
      Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }
}
