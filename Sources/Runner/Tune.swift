import ArgumentParser
import DiffEqNet
import Foundation

/// `runner tune`: times every GEMM tiling on an OpenCL device and keeps the fastest for it, as
/// CLBlast's tuners do. Every later `runner` command on that device (same driver) compiles the
/// GEMM and convolution kernels with that tiling unless `DIFFEQNET_OPENCL_GEMM_TILE` forces one.
struct Tune: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Find the fastest GEMM tiling for an OpenCL device and keep it for later runs.",
    discussion: """
      Each candidate tiling (TS,WPT,TSK: a TS×TS output tile per work-group, WPT×WPT outputs per \
      work-item, TSK-deep slabs in local memory) is compiled, checked against the CPU backend, \
      and timed on an n×n×n sgemm and on a 3x3 convolution (batch 32, 64->64 channels, 14x14) \
      by the OpenCL kernels, never OpenBLAS. The tiling with the smallest geometric mean of the \
      two medians is written to the tuning folder, keyed by the device's name and driver \
      version: $DIFFEQNET_OPENCL_TUNING, else $XDG_CACHE_HOME/diffeqnet/tuning, else \
      ~/.cache/diffeqnet/tuning. `runner bench kernels` prints the tiling in use.
      """)

  @Option(help: "The OpenCL device to tune: opencl or opencl:N (see `runner devices`).")
  var device = "opencl"

  @Option(help: "The sgemm's size n (64 to 8192).")
  var size = 1024

  @Option(help: "Timed repetitions per measurement (the median is used).")
  var repetitions = 5

  @Flag(help: "Measure and print, but keep nothing.")
  var dryRun = false

  @Flag(help: "Print one JSON object per measurement instead of a table.")
  var json = false

  func validate() throws {
    guard case .opencl = try DeviceSpec(parsing: device) else {
      throw ValidationError("--device must be opencl or opencl:N: the CPU backend has no tiling")
    }
    guard (64...8192).contains(size) else { throw ValidationError("--size must be in 64...8192") }
    guard (1...100).contains(repetitions) else {
      throw ValidationError("--repetitions must be in 1...100")
    }
  }

  func run() throws {
    guard case .opencl(let n) = try DeviceSpec(parsing: device) else { return }
    let index = n ?? 0
    let base = try openCLOptions(blasOnCPUDevice: false)
    // Without the store: a record that cannot be used is what a new sweep replaces.
    var probeOptions = base
    probeOptions.tuning = nil
    let probe = try OpenCLBackend(deviceIndex: index, options: probeOptions)
    let info = probe.device
    let reference = try TuningProblem(size: size, on: CPUBackend())
    if !json { print("tuning opencl:\(index) \(info.name) (driver \(info.driverVersion))") }

    var best: (tiling: OpenCLBackend.GEMMTiling, score: Double)? = nil
    for tiling in OpenCLBackend.GEMMTiling.tuningCandidates {
      var options = base
      options.gemmTiling = tiling
      options.tuning = nil
      let outcome: TuningOutcome
      do {
        let backend = try OpenCLBackend(deviceIndex: index, options: options)
        outcome = try TuningProblem(size: size, on: backend).time(
          against: reference, repetitions: repetitions)
      } catch {
        // A tiling the device cannot run (work-group or local-memory limits) is skipped.
        report(tiling, info, outcome: nil, reason: "\(error)")
        continue
      }
      report(tiling, info, outcome: outcome, reason: nil)
      if outcome.correct, best.map({ outcome.score < $0.score }) ?? true {
        best = (tiling, outcome.score)
      }
    }
    guard let best else { throw TuningFailed(device: "opencl:\(index) \(info.name)") }
    guard let store = base.tuning, !dryRun else {
      if !json { print("fastest: \(best.tiling) (not kept)") }
      return
    }
    try store.store(.init(device: info, tiling: best.tiling), for: info)
    if json {
      print(
        formatJSONLine([
          ("op", "tune_choice"), ("device", "opencl:\(index) \(info.name)"),
          ("tile", best.tiling.description), ("file", store.url(for: info).path),
        ]))
    } else {
      print("fastest: \(best.tiling), kept in \(store.url(for: info).path)")
    }
  }

  func report(
    _ tiling: OpenCLBackend.GEMMTiling, _ info: OpenCLDevice, outcome: TuningOutcome?,
    reason: String?
  ) {
    if json {
      var fields: [(String, Any)] = [
        ("op", "tune"), ("device", info.name), ("tile", tiling.description),
      ]
      if let o = outcome {
        fields += [
          ("gemm_s", o.gemmSeconds), ("gemm_gflops", o.gemmFLOPs / o.gemmSeconds / 1e9),
          ("conv_s", o.convSeconds), ("conv_gflops", o.convFLOPs / o.convSeconds / 1e9),
          ("correct", o.correct),
        ]
      }
      if let reason { fields.append(("skipped", reason)) }
      print(formatJSONLine(fields))
      return
    }
    let label = "tile \(tiling)".padding(toLength: 16, withPad: " ", startingAt: 0)
    if let o = outcome {
      print(
        label
          + String(
            format: "sgemm %8.1f GFLOP/s   conv %8.1f GFLOP/s%@",
            o.gemmFLOPs / o.gemmSeconds / 1e9, o.convFLOPs / o.convSeconds / 1e9,
            o.correct ? "" : "   WRONG RESULT: refused"))
    } else {
      print(label + "skipped: \(reason ?? "")")
    }
  }
}

/// The two products a tiling is timed on, with fixed random operands.
struct TuningProblem {
  let backend: any Backend
  let a, b, x, w: Tensor
  let shape: GEMMShape

  init(size: Int, on backend: any Backend) throws {
    self.backend = backend
    var rng = RandomState(seed: 11)
    a = try Tensor.normal([size, size], rng: &rng, on: backend)
    b = try Tensor.normal([size, size], rng: &rng, on: backend)
    x = try Tensor.normal([32, 64, 14, 14], rng: &rng, on: backend)
    w = try Tensor.normal([64, 64, 3, 3], std: 0.05, rng: &rng, on: backend)
    shape = GEMMShape(m: size, n: size, k: size)
  }

  func gemm() throws -> Tensor {
    let c = try Tensor.zeros([shape.m, shape.n], on: backend)
    try backend.gemm(a.buffer, b.buffer, c.buffer, shape, dtype: .float32)
    return c
  }

  func conv() throws -> Tensor { try x.conv2d(weight: w, padding: 1) }

  /// Medians of both products, and whether both agree with `reference` (the same problem on the
  /// CPU backend) to a relative 1e-3 of the largest magnitude, float32 summation over k ≤ 8192.
  func time(against reference: TuningProblem, repetitions: Int) throws -> TuningOutcome {
    func agrees(_ got: Tensor, _ want: Tensor) throws -> Bool {
      let (g, r) = (try got.toDoubles(), try want.toDoubles())
      let scale = r.map { Swift.abs($0) }.max() ?? 1
      return zip(g, r).allSatisfy { Swift.abs($0 - $1) <= 1e-3 * max(1, scale) }
    }
    let correct =
      try agrees(try gemm(), try reference.gemm()) && agrees(try conv(), try reference.conv())
    let gemmSeconds = try medianTime(repetitions: repetitions) {
      _ = try gemm()
      try backend.synchronize()
    }
    let convSeconds = try medianTime(repetitions: repetitions) {
      _ = try conv()
      try backend.synchronize()
    }
    return TuningOutcome(
      gemmSeconds: gemmSeconds, gemmFLOPs: shape.flops, convSeconds: convSeconds,
      convFLOPs: 2.0 * 32 * 64 * 64 * 9 * 14 * 14, correct: correct)
  }
}

/// No candidate tiling both ran and agreed with the CPU backend.
struct TuningFailed: Error, CustomStringConvertible {
  var device: String
  var description: String { "no GEMM tiling ran correctly on \(device); nothing was kept" }
}

/// One tiling's figures.
struct TuningOutcome {
  var gemmSeconds: Double
  var gemmFLOPs: Double
  var convSeconds: Double
  var convFLOPs: Double
  var correct: Bool
  /// The geometric mean of the two medians: neither product dominates the choice.
  var score: Double { (gemmSeconds * convSeconds).squareRoot() }
}
