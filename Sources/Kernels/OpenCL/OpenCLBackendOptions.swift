extension OpenCLBackend {
  /// How an `OpenCLBackend` computes, beyond which device: set by the caller (the `runner` CLI
  /// maps its flags and environment onto it), never read from the environment here.
  public struct Options: Sendable, Equatable {
    /// On a device of CPU type (PoCL, Intel's CPU runtime), compute `gemm` with OpenBLAS on mapped
    /// buffers instead of the OpenCL kernel: a tuned BLAS is several times faster there. `false`
    /// always uses the kernel (the tests do, to exercise it).
    public var blasOnCPUDevice: Bool
    /// Forces the work-group size of reductions, group norm and softmax (a power of two); nil
    /// chooses the largest the device and the compiled kernel allow.
    public var reductionWorkGroupSize: Int?
    /// Forces the GEMM kernel's tiling; nil chooses the largest candidate the device allows.
    public var gemmTiling: GEMMTiling?
    /// Forces the number of k-slices of a convolution's weight gradient (split-K, at least 1);
    /// nil chooses enough to occupy the device.
    public var convWeightSplits: Int?
    /// Where compiled programs are kept between processes; nil compiles in every process.
    public var programCache: OpenCLProgramCache?

    public init(
      blasOnCPUDevice: Bool = true, reductionWorkGroupSize: Int? = nil,
      gemmTiling: GEMMTiling? = nil, convWeightSplits: Int? = nil,
      programCache: OpenCLProgramCache? = nil
    ) {
      self.blasOnCPUDevice = blasOnCPUDevice
      self.reductionWorkGroupSize = reductionWorkGroupSize
      self.gemmTiling = gemmTiling
      self.convWeightSplits = convWeightSplits
      self.programCache = programCache
    }

    /// Throws `BackendError.invalidOption` naming the first setting the kernels cannot run with.
    public func validate() throws {
      if let wg = reductionWorkGroupSize, wg <= 0 || wg & (wg - 1) != 0 {
        throw BackendError.invalidOption(
          "reduction work-group size \(wg) is not a positive power of two")
      }
      try gemmTiling?.validate()
      if let splits = convWeightSplits, splits < 1 || splits > 1024 {
        throw BackendError.invalidOption("convolution weight splits \(splits) is not in 1...1024")
      }
    }
  }

  /// The GEMM kernel's blocking: a `ts`×`ts` output tile per work-group, `wpt`×`wpt` outputs per
  /// work-item (so (ts / wpt)² work-items), and `tsk` columns of the inner dimension staged in
  /// local memory per pass.
  public struct GEMMTiling: Sendable, Equatable, CustomStringConvertible {
    public let ts: Int
    public let wpt: Int
    public let tsk: Int

    public init(ts: Int, wpt: Int, tsk: Int) {
      self.ts = ts
      self.wpt = wpt
      self.tsk = tsk
    }

    /// Throws unless every size is positive and `ts` is a multiple of `wpt` (the kernel divides
    /// the tile evenly among work-items).
    public func validate() throws {
      guard ts > 0, wpt > 0, tsk > 0, ts % wpt == 0 else {
        throw BackendError.invalidOption(
          "GEMM tiling \(self): sizes must be positive and TS a multiple of WPT")
      }
    }

    public var description: String { "\(ts),\(wpt),\(tsk)" }

    var threadsPerDim: Int { ts / wpt }
    var threads: Int { threadsPerDim * threadsPerDim }
    func localBytes(_ dtype: DType) -> Int { 2 * tsk * (ts + 1) * dtype.size }
    /// Largest first; the last one runs anywhere (a single work-item per group).
    static let candidates = [
      GEMMTiling(ts: 64, wpt: 4, tsk: 16), GEMMTiling(ts: 32, wpt: 2, tsk: 16),
      GEMMTiling(ts: 32, wpt: 4, tsk: 16), GEMMTiling(ts: 16, wpt: 2, tsk: 16),
      GEMMTiling(ts: 16, wpt: 4, tsk: 8), GEMMTiling(ts: 8, wpt: 2, tsk: 8),
      GEMMTiling(ts: 4, wpt: 4, tsk: 4),
    ]
  }
}
