import CBLAS
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

  public init() {
    pool = BufferPool(
      allocate: { bytes in
        guard let p = aligned_alloc_wrapper(bytes) else {
          throw BackendError.openCL(call: "aligned_alloc(\(bytes))", code: -4)
        }
        return .host(p)
      },
      free: { free($0.host) })
    name = "cpu (OpenBLAS, \(hostCores) threads)"
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
private func aligned_alloc_wrapper(_ bytes: Int) -> UnsafeMutableRawPointer? {
  var p: UnsafeMutableRawPointer?
  guard posix_memalign(&p, 64, max(64, bytes)) == 0 else { return nil }
  return p
}

/// The element types the CPU backend computes in, with their BLAS entry points.
protocol CPUScalar: Real, BinaryFloatingPoint {
  static func gemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Self,
    _ a: UnsafePointer<Self>, _ lda: Int, _ b: UnsafePointer<Self>, _ ldb: Int, _ beta: Self,
    _ c: UnsafeMutablePointer<Self>, _ ldc: Int)
}

extension Float: CPUScalar {
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
