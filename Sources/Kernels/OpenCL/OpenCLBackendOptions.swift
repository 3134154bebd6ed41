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
    /// Forces the GEMM kernel's tiling; nil takes the device's record in `tuning`, if any, else
    /// the largest candidate the device allows.
    public var gemmTiling: GEMMTiling?
    /// Forces the number of k-slices of a convolution's weight gradient (split-K, at least 1);
    /// nil chooses enough to occupy the device.
    public var convWeightSplits: Int?
    /// Where compiled programs are kept between processes; nil compiles in every process.
    public var programCache: OpenCLProgramCache?
    /// Where `runner tune` keeps the fastest GEMM tiling per device; nil uses no tuning.
    public var tuning: OpenCLTuningStore?

    public init(
      blasOnCPUDevice: Bool = true, reductionWorkGroupSize: Int? = nil,
      gemmTiling: GEMMTiling? = nil, convWeightSplits: Int? = nil,
      programCache: OpenCLProgramCache? = nil, tuning: OpenCLTuningStore? = nil
    ) {
      self.blasOnCPUDevice = blasOnCPUDevice
      self.reductionWorkGroupSize = reductionWorkGroupSize
      self.gemmTiling = gemmTiling
      self.convWeightSplits = convWeightSplits
      self.programCache = programCache
      self.tuning = tuning
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

  /// Where the GEMM tiling in use comes from.
  public enum GEMMTilingOrigin: String, Sendable {
    /// `Options.gemmTiling`.
    case forced
    /// The device's record in `Options.tuning`.
    case tuned
    /// The largest of `GEMMTiling.candidates` the device allows.
    case largestThatFits = "default"
  }

  /// The GEMM kernel's blocking: a `ts`×`ts` output tile per work-group, `wpt`×`wpt` outputs per
  /// work-item (so (ts / wpt)² work-items), and `tsk` columns of the inner dimension staged in
  /// local memory per pass.
  public struct GEMMTiling: Codable, Sendable, Equatable, CustomStringConvertible {
    public let ts: Int
    public let wpt: Int
    public let tsk: Int

    public init(ts: Int, wpt: Int, tsk: Int) {
      self.ts = ts
      self.wpt = wpt
      self.tsk = tsk
    }

    /// Throws unless every size is positive and within what any device could run (`ts` ≤ 256,
    /// `wpt` ≤ 16, `tsk` ≤ 64), and `ts` is a multiple of `wpt` (the kernel divides the tile
    /// evenly among work-items).
    public func validate() throws {
      guard (1...256).contains(ts), (1...16).contains(wpt), (1...64).contains(tsk), ts % wpt == 0
      else {
        throw BackendError.invalidOption(
          "GEMM tiling \(self): sizes must be positive, TS ≤ 256, WPT ≤ 16, TSK ≤ 64, and TS a "
            + "multiple of WPT")
      }
    }

    public var description: String { "\(ts),\(wpt),\(tsk)" }

    var threadsPerDim: Int { ts / wpt }
    var threads: Int { threadsPerDim * threadsPerDim }
    func localBytes(_ dtype: DType) -> Int { 2 * tsk * (ts + 1) * dtype.size }
    /// The default choice, largest first: the first the device allows is used. The last one runs
    /// anywhere (a single work-item per group).
    static let candidates = [
      GEMMTiling(ts: 64, wpt: 4, tsk: 16), GEMMTiling(ts: 32, wpt: 2, tsk: 16),
      GEMMTiling(ts: 32, wpt: 4, tsk: 16), GEMMTiling(ts: 16, wpt: 2, tsk: 16),
      GEMMTiling(ts: 16, wpt: 4, tsk: 8), GEMMTiling(ts: 8, wpt: 2, tsk: 8),
      GEMMTiling(ts: 4, wpt: 4, tsk: 4),
    ]

    /// What `runner tune` times: the defaults and the 8×8 register blockings, which need more
    /// registers per work-item than a device can be assumed to have without measuring.
    public static let tuningCandidates =
      [
        GEMMTiling(ts: 128, wpt: 8, tsk: 16), GEMMTiling(ts: 128, wpt: 8, tsk: 8),
        GEMMTiling(ts: 64, wpt: 8, tsk: 16),
      ] + candidates
  }
}
