import DiffEqNet
import Foundation

/// One benchmark figure: a median time and the rate it implies.
struct Measurement {
  var op: String
  var device: String
  var shape: String
  var medianSeconds: Double
  /// Floating-point operations per run (for GFLOP/s) or bytes moved (for GB/s); at most one.
  var flops: Double? = nil
  var bytes: Double? = nil
  /// Extra fields for the JSON line (numbers are written as numbers).
  var extra: [String: String] = [:]

  var gflops: Double? { flops.map { $0 / medianSeconds / 1e9 } }
  var gbps: Double? { bytes.map { $0 / medianSeconds / 1e9 } }

  func jsonLine() -> String {
    var fields: [(String, Any)] = [
      ("op", op), ("device", device), ("shape", shape), ("median_s", medianSeconds),
    ]
    if let g = gflops { fields.append(("gflops", g)) }
    if let g = gbps { fields.append(("gbps", g)) }
    for (k, v) in extra.sorted(by: { $0.key < $1.key }) { fields.append((k, Double(v) ?? v)) }
    return formatJSONLine(fields)
  }
}

/// The middle value of `values` (the upper one of an even count).
func median(_ values: [Double]) -> Double {
  let sorted = values.sorted()
  return sorted[sorted.count / 2]
}

/// The median wall time of `body` over `repetitions` runs after one warm-up run; `body` must end
/// with the device synchronised so the time includes the work, not just its enqueueing.
func medianTime(repetitions: Int, inner: Int = 1, _ body: () throws -> Void) rethrows -> Double {
  try body()
  var times: [Double] = []
  for _ in 0..<repetitions {
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<inner { try body() }
    times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(inner))
  }
  return median(times)
}

/// Float32 GEMM of two n×n matrices on `backend`: its median time and GFLOP/s. At n = 1024 on
/// the CPU backend (OpenBLAS) it is this machine's reference for arithmetic, which both
/// benchmarks print: the machine's speed drifts by up to 1.6× from minute to minute, so every
/// figure reads best as a fraction of the reference taken beside it.
func measureGEMM(_ backend: any Backend, n: Int, repetitions: Int) throws -> Measurement {
  var rng = RandomState(seed: 1)
  let a = try Tensor.normal([n, n], rng: &rng, on: backend)
  let b = try Tensor.normal([n, n], rng: &rng, on: backend)
  let c = try Tensor.zeros([n, n], on: backend)
  let shape = GEMMShape(m: n, n: n, k: n)
  let t = try medianTime(repetitions: repetitions) {
    try backend.gemm(a.buffer, b.buffer, c.buffer, shape, dtype: .float32)
    try backend.synchronize()
  }
  return Measurement(
    op: "gemm", device: backend.name, shape: "\(n)x\(n)x\(n)", medianSeconds: t,
    flops: shape.flops)
}
