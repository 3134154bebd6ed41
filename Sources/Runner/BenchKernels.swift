import ArgumentParser
import DiffEqNet
import Foundation

/// `runner bench kernels`: GEMM, convolution, normalisation and element-wise rates per device,
/// the dispatch cost of tiny ops, and the machine's own ceilings for comparison.
struct BenchKernels: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "kernels",
    abstract: "Measure GEMM, conv2d, group norm, axpy and tiny-op dispatch on each device.",
    discussion: """
      Each figure is the median of --repetitions timed runs after a warm-up. The reference lines \
      (OpenBLAS sgemm at 1024 and a host memcpy) are this machine's ceilings: read every GFLOP/s \
      against the first and every GB/s against the second.

      On the CPU backend, 3x3 stride-1 convolutions run by Winograd: F(4x4, 3x3) where the CPU \
      has AVX-512, else F(2x2, 3x3) where it has AVX2 and FMA; their GFLOP/s count the direct \
      convolution's 2·N·O·C·9·H·W operations (the usual "effective" rate), and the direct \
      lowering ("direct conv") is measured beside them, as is, where the CPU has AVX-512, \
      F(2x2, 3x3) with AVX2 ("AVX2").
      """)

  @OptionGroup var options: BenchOptions

  @Option(
    help: """
      Which groups to measure: all, or a comma-separated list of gemm, conv, norm, axpy, \
      dispatch. The reference lines are always printed.
      """)
  var only = "all"

  static let groups = ["gemm", "conv", "norm", "axpy", "dispatch"]

  func validate() throws { _ = try selectedGroups(only, of: Self.groups) }

  func run() throws {
    var all: [Measurement] = []
    let emit = { (m: Measurement) in
      all.append(m)
      print(options.json ? m.jsonLine() : tableLine(m, references: all))
    }
    if !options.json { print(tableHeader) }
    let reference = try referenceMeasurements()
    reference.forEach(emit)
    for backend in try options.backends() {
      let tile = try tileInUse(backend)
      if let tile, !options.json { print("# \(backend.name): GEMM tile \(tile.conv)") }
      for var m in try measure(on: backend) {
        if let tile, m.op == "gemm" || m.op.hasPrefix("conv2d") {
          m.extra["tile"] = m.op == "gemm" ? tile.gemm : tile.conv
        }
        emit(m)
      }
    }
  }

  /// On an OpenCL backend, the tiling its GEMM and convolution kernels run with and where it
  /// came from (`runner tune`, forced, or the default); gemm reads "openblas" where it is handed
  /// to OpenBLAS. Nil on the CPU backend.
  func tileInUse(_ backend: any Backend) throws -> (gemm: String, conv: String)? {
    guard let opencl = backend as? OpenCLBackend else { return nil }
    let (tiling, origin) = try opencl.gemmTiling(for: .float32)
    let conv = "\(tiling) (\(origin.rawValue))"
    return (opencl.usesBLASForGEMM ? "openblas" : conv, conv)
  }

  /// OpenBLAS sgemm 1024 and host memory bandwidth.
  func referenceMeasurements() throws -> [Measurement] {
    let cpu = CPUBackend()
    var gemm = try gemmMeasurement(cpu, n: 1024)
    gemm.op = "reference_sgemm"
    let bytes = 1 << 26
    let src = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    let dst = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    defer {
      src.deallocate()
      dst.deallocate()
    }
    memset(src, 1, bytes)
    let t = medianTime(repetitions: options.repetitions) {
      dst.copyMemory(from: src, byteCount: bytes)
    }
    let copy = Measurement(
      op: "reference_memcpy", device: "host", shape: "\(bytes >> 20) MiB", medianSeconds: t,
      bytes: 2 * Double(bytes))
    return [gemm, copy]
  }

  func measure(on backend: any Backend) throws -> [Measurement] {
    let groups = try selectedGroups(only, of: Self.groups)
    var out: [Measurement] = []
    if groups.contains("gemm") {
      for n in [256, 512, 1024, 2048] { out.append(try gemmMeasurement(backend, n: n)) }
    }
    if groups.contains("conv") {
      // Where the CPU backend runs these by Winograd, the direct lowering (and, with AVX-512,
      // F(2×2, 3×3) with AVX2) is measured beside it, in the same minutes, so that the ratios
      // are meaningful on a noisy machine.
      let cpu = backend as? CPUBackend
      let alternatives =
        (cpu?.usesWinograd == true ? [CPUBackend(winograd: false)] : [])
        + (cpu?.usesAVX512 == true ? [CPUBackend(avx512: false)] : [])
      for c in [64, 65] {
        out += try convMeasurements(backend, inChannels: c)
        for alternative in alternatives { out += try convMeasurements(alternative, inChannels: c) }
      }
    }
    if groups.contains("norm") { out.append(try groupNormMeasurement(backend)) }
    if groups.contains("axpy") { out.append(try axpyMeasurement(backend)) }
    if groups.contains("dispatch") { out += try dispatchMeasurements(backend) }
    return out
  }

  func gemmMeasurement(_ backend: any Backend, n: Int) throws -> Measurement {
    try measureGEMM(
      backend, n: n,
      repetitions: n >= 2048 ? max(3, options.repetitions / 2) : options.repetitions)
  }

  func convMeasurements(_ backend: any Backend, inChannels c: Int) throws -> [Measurement] {
    var rng = RandomState(seed: 2)
    let (n, o, h) = (32, 64, 14)
    let x = try Tensor.normal([n, c, h, h], rng: &rng, on: backend)
    let w = try Tensor.normal([o, c, 3, 3], std: 0.05, rng: &rng, on: backend)
    let gy = try Tensor.normal([n, o, h, h], rng: &rng, on: backend)
    let g = ConvGeometry(n: n, c: c, h: h, w: h, kh: 3, kw: 3, stride: 1, pad: 1)
    let flops = 2.0 * Double(n * o * c * 9 * h * h)
    let shape = "N=\(n) \(c)->\(o) \(h)x\(h) k=3"
    func time(_ body: () throws -> Tensor) throws -> Double {
      try medianTime(repetitions: options.repetitions) {
        _ = try body()
        try backend.synchronize()
      }
    }
    return [
      Measurement(
        op: "conv2d_forward", device: backend.name, shape: shape,
        medianSeconds: try time { try x.conv2d(weight: w, padding: 1) }, flops: flops),
      Measurement(
        op: "conv2d_backward_data", device: backend.name, shape: shape,
        medianSeconds: try time { try Tensor.conv2dBackwardData(gy, weight: w, geometry: g) },
        flops: flops),
      Measurement(
        op: "conv2d_backward_weights", device: backend.name, shape: shape,
        medianSeconds: try time { try Tensor.conv2dBackwardWeights(gy, input: x, geometry: g) },
        flops: flops),
    ]
  }

  func groupNormMeasurement(_ backend: any Backend) throws -> Measurement {
    var rng = RandomState(seed: 3)
    let x = try Tensor.normal([32, 64, 14, 14], rng: &rng, on: backend)
    let norm = try GroupNorm(groups: 32, channels: 64, on: backend)
    let t = try medianTime(repetitions: options.repetitions, inner: 4) {
      _ = try norm(x)
      try backend.synchronize()
    }
    return Measurement(
      op: "group_norm", device: backend.name, shape: "32x64x14x14 G=32", medianSeconds: t,
      bytes: 2 * Double(x.count * 4))
  }

  /// y ← αx + y over 4M floats, counted as the 3 streams a fused kernel needs (today it is two
  /// launches, so the figure also shows what fusing would gain).
  func axpyMeasurement(_ backend: any Backend) throws -> Measurement {
    var rng = RandomState(seed: 4)
    let n = 1 << 22
    let x = try Tensor.normal([n], rng: &rng, on: backend)
    let y = try Tensor.normal([n], rng: &rng, on: backend)
    let t = try medianTime(repetitions: options.repetitions, inner: 4) {
      _ = try x * 0.5 + y
      try backend.synchronize()
    }
    return Measurement(
      op: "axpy", device: backend.name, shape: "n=\(n)", medianSeconds: t, bytes: 3 * Double(n * 4))
  }

  /// The per-op cost of the tiny tensors small networks are made of.
  func dispatchMeasurements(_ backend: any Backend) throws -> [Measurement] {
    var rng = RandomState(seed: 5)
    let a = try Tensor.normal([20, 50], rng: &rng, on: backend)
    let b = try Tensor.normal([20, 50], rng: &rng, on: backend)
    let add = try medianTime(repetitions: options.repetitions, inner: 2000) {
      _ = try a + b
    }
    try backend.synchronize()
    let layer = try Linear(2, 50, rng: &rng, on: backend)
    let x = try Tensor.normal([20, 2], rng: &rng, on: backend)
    let cot = try Tensor.ones([20, 50], on: backend)
    let linear = try medianTime(repetitions: options.repetitions, inner: 500) {
      _ = try vjp(layer, at: [x], cotangent: cot) { xs in try layer(xs[0]) }
    }
    try backend.synchronize()
    return [
      Measurement(
        op: "dispatch_add", device: backend.name, shape: "20x50 + 20x50", medianSeconds: add,
        extra: ["us": String(format: "%.3g", add * 1e6)]),
      Measurement(
        op: "dispatch_linear_fwd_bwd", device: backend.name, shape: "Linear(2->50) batch 20",
        medianSeconds: linear, extra: ["us": String(format: "%.3g", linear * 1e6)]),
    ]
  }
}

private let tableHeader =
  "op                        device                                          shape                     median        rate          vs ref"

private func tableLine(_ m: Measurement, references: [Measurement]) -> String {
  let sgemm = references.first { $0.op == "reference_sgemm" }?.gflops
  let memcpy = references.first { $0.op == "reference_memcpy" }?.gbps
  func pad(_ s: String, _ n: Int) -> String {
    s.count >= n ? String(s.prefix(n - 1)) + " " : s + String(repeating: " ", count: n - s.count)
  }
  let time =
    m.medianSeconds < 1e-3
    ? String(format: "%.2f us", m.medianSeconds * 1e6)
    : String(format: "%.3f ms", m.medianSeconds * 1e3)
  var rate = ""
  var ratio = ""
  if let g = m.gflops {
    rate = String(format: "%.1f GFLOP/s", g)
    if let r = sgemm { ratio = String(format: "%.2f x sgemm", g / r) }
  } else if let g = m.gbps {
    rate = String(format: "%.1f GB/s", g)
    if let r = memcpy { ratio = String(format: "%.2f x memcpy", g / r) }
  } else if let us = m.extra["us"] {
    rate = "\(us) us/op"
  }
  return pad(m.op, 26) + pad(m.device, 48) + pad(m.shape, 26) + pad(time, 14) + pad(rate, 14)
    + ratio
}
