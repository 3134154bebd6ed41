import Foundation
import Kernels
import NumericTestSupport
import XCTest

// Every primitive of `OpenCLBackend` against naive float64 loops written here, independent of both
// backends. Inputs are fresh seeded random values (rounded to the element type, so the reference
// sees exactly what the device sees), outputs are poisoned with NaN first so an element the
// kernel forgets to write fails the comparison, and the error measure is ‖out − ref‖ / ‖ref‖.
//
// The device is OpenCL device 0, or the one DIFFEQNET_TEST_OPENCL_DEVICE names; the tests skip
// when there is no OpenCL device at all.

final class OpenCLBackendTests: XCTestCase, KernelTestCase {
  static let deviceIndex =
    Int(ProcessInfo.processInfo.environment["DIFFEQNET_TEST_OPENCL_DEVICE"] ?? "") ?? 0
  /// GEMM through the OpenCL kernel even on CPU devices.
  static let kernelBackend = Result {
    try OpenCLBackend(deviceIndex: deviceIndex, options: .init(blasOnCPUDevice: false))
  }
  /// GEMM through OpenBLAS when the device is a CPU.
  static let blasBackend = Result {
    try OpenCLBackend(deviceIndex: deviceIndex, options: .init(blasOnCPUDevice: true))
  }

  var rng = SplitMix64(seed: 0)

  override func setUp() {
    super.setUp()
    rng = seedForTestName()
  }

  func backend(blas: Bool = false) throws -> OpenCLBackend {
    if OpenCLBackend.devices().isEmpty { throw missing(.opencl, "no OpenCL platform or device") }
    return try (blas ? Self.blasBackend : Self.kernelBackend).get()
  }

  /// float32 always, float64 where the device has it.
  func dtypes(_ b: OpenCLBackend) -> [DType] {
    b.supports(.float64) ? [.float32, .float64] : [.float32]
  }

  static let sizes = [1, 7, 13, 97, 131, 64, 256, 1031]

  // MARK: Devices, selection, builds

  func testDeviceDiscovery() throws {
    let devices = OpenCLBackend.devices()
    if devices.isEmpty { throw missing(.opencl, "no OpenCL platform or device") }
    for (i, d) in devices.enumerated() {
      XCTAssertEqual(d.index, i)
      XCTAssertFalse(d.name.isEmpty)
      XCTAssertGreaterThan(d.computeUnits, 0)
      XCTAssertGreaterThan(d.maxWorkGroupSize, 0)
      XCTAssertGreaterThan(d.localMemBytes, 0)
      XCTAssertGreaterThan(d.globalMemBytes, 0)
      XCTAssertTrue(d.version.hasPrefix("OpenCL"), d.version)
      XCTAssertTrue(d.description.hasPrefix("opencl:\(i) "), d.description)
    }
    let b = try backend()
    XCTAssertTrue(b.name.hasPrefix("opencl:\(Self.deviceIndex) "), b.name)
    XCTAssertTrue(b.supports(.float32))
    XCTAssertEqual(b.supports(.float64), b.device.supportsFP64)
    XCTAssertThrowsError(try OpenCLBackend(deviceIndex: devices.count)) { error in
      guard case BackendError.noSuchDevice = error else {
        return XCTFail("expected noSuchDevice, got \(error)")
      }
    }
  }

  func testDeviceSpecParsing() throws {
    XCTAssertEqual(try DeviceSpec(parsing: "auto"), .auto)
    XCTAssertEqual(try DeviceSpec(parsing: "cpu"), .cpu)
    XCTAssertEqual(try DeviceSpec(parsing: "opencl"), .opencl(nil))
    XCTAssertEqual(try DeviceSpec(parsing: "opencl:0"), .opencl(0))
    XCTAssertEqual(try DeviceSpec(parsing: "OpenCL:12"), .opencl(12))
    for bad in ["", "gpu", "opencl:", "opencl:-1", "opencl:x", "opencl:1:2", "cuda"] {
      XCTAssertThrowsError(try DeviceSpec(parsing: bad), "'\(bad)' should not parse") { error in
        XCTAssertTrue("\(error)".contains("expected auto, cpu, opencl or opencl:N"), "\(error)")
      }
    }
    XCTAssertEqual(DeviceSpec.opencl(3).description, "opencl:3")
  }

  func testMakeBackend() throws {
    XCTAssertTrue(try makeBackend(.cpu) is CPUBackend)
    let devices = OpenCLBackend.devices()
    let auto = try makeBackend(.auto)
    if let gpu = devices.first(where: { $0.type == .gpu || $0.type == .accelerator }) {
      XCTAssertEqual((auto as? OpenCLBackend)?.device.index, gpu.index)
    } else {
      XCTAssertTrue(auto is CPUBackend, "auto without a GPU should be the CPU backend")
    }
    if devices.isEmpty {
      XCTAssertThrowsError(try makeBackend(.opencl(nil))) { error in
        XCTAssertEqual(error as? BackendError, .noOpenCLPlatform)
      }
    } else {
      XCTAssertEqual((try makeBackend(.opencl(nil)) as? OpenCLBackend)?.device.index, 0)
      XCTAssertThrowsError(try makeBackend(.opencl(devices.count))) { error in
        guard case BackendError.noSuchDevice = error else {
          return XCTFail("expected noSuchDevice, got \(error)")
        }
      }
    }
  }

  func testBuildFailureCarriesCompilerLog() throws {
    let b = try backend()
    let broken = """
      __kernel void broken(__global float* y) {
        y[get_global_id(0)] = no_such_identifier_42;
      }
      """
    XCTAssertThrowsError(
      try b.buildProgram(source: broken, name: "broken", options: "-D X=1")
    ) { error in
      guard case BackendError.kernelBuildFailed(let program, let options, let log) = error else {
        return XCTFail("expected kernelBuildFailed, got \(error)")
      }
      XCTAssertEqual(program, "broken")
      XCTAssertEqual(options, "-D X=1")
      XCTAssertTrue(log.contains("no_such_identifier_42"), "build log lacks the error: \(log)")
      XCTAssertTrue("\(error)".contains(log))
    }
    let names = try b.buildProgram(
      source: "__kernel void a(__global float* y) { y[0] = 1; }\n__kernel void b() {}",
      name: "ok", options: "")
    XCTAssertEqual(names, ["a", "b"])
  }

  func testEveryBuiltInProgramBuilds() throws {
    let b = try backend()
    for t in dtypes(b) {
      // Programs are built as the backend builds them: the shared prelude, then the program.
      let prelude = try XCTUnwrap(KernelSources.all["prelude"])
      for (name, source) in KernelSources.all where name != "prelude" {
        let options =
          t == .float32 ? "-cl-std=CL1.2 -D T=float" : "-cl-std=CL1.2 -D T=double -D USE_FP64=1"
        XCTAssertFalse(
          try b.buildProgram(source: prelude + source, name: name, options: options).isEmpty)
      }
    }
  }

  func testWriteReadRoundTrip() throws {
    let b = try backend()
    for t in dtypes(b) {
      for n in Self.sizes {
        let v = random(n, -10...10, t)
        XCTAssertEqual(try download(b, try upload(b, v, t), n, t), v)
      }
    }
  }

  /// The traffic counters: a known sequence of calls gives known counts, and a launch over an
  /// empty range is not one.
  func testTrafficCountsLaunchesSynchronisationsAndBytes() throws {
    let b = try backend()
    let n = 37
    let before = b.traffic
    let x = try upload(b, random(n, -1...1, .float32), .float32)  // no sync, 4n bytes in
    let y = try b.allocate(n, .float32)
    try b.fill(y, value: 1, count: n, dtype: .float32)  // 1 launch
    try b.affine(x, y, scale: 2, shift: 1, count: n, dtype: .float32)  // 1 launch
    try b.fill(y, value: 1, count: 0, dtype: .float32)  // nothing
    _ = try download(b, y, n, .float32)  // 1 sync, 4n bytes out
    try b.synchronize()  // 1 sync
    let d = b.traffic - before
    XCTAssertEqual(d.launches, 2, "\(d)")
    XCTAssertEqual(d.hostSynchronizations, 2, "\(d)")
    XCTAssertEqual(d.bytesToDevice, 4 * n, "\(d)")
    XCTAssertEqual(d.bytesFromDevice, 4 * n, "\(d)")
    XCTAssertEqual(CPUBackend().traffic, DeviceTraffic(), "the CPU backend has no device")
  }

  /// A write returns before the device has the data: it transfers from its own copy, so the
  /// caller may overwrite its bytes at once and later work still sees what was written. The
  /// copies are kept while the transfers are pending and freed once a read shows them done.
  /// (PoCL itself snapshots a non-blocking write's bytes at enqueue, so a write without the copy
  /// would also pass the data check here; it is a GPU driver that reads the host memory late.)
  func testWritesDoNotWaitAndTransferWhatWasWritten() throws {
    let b = try backend()
    let n = 1031
    var rng = SystemRandomNumberGenerator()
    let buffers = try (0..<4).map { _ in try b.allocate(n, .float32) }
    var expected: [[Float]] = []
    var host = [Float](repeating: 0, count: n)
    let before = b.traffic
    // The queue is held, so every transfer is still pending when the host bytes change.
    try b.withQueueHeld {
      for buffer in buffers {
        for i in 0..<n { host[i] = Float.random(in: -1...1, using: &rng) }
        expected.append(host)
        try host.withUnsafeBytes { try b.write($0, to: buffer) }
        for i in 0..<n { host[i] = .nan }
      }
      // Held behind the gate, none of the transfers can have run: all four copies are kept.
      usleep(100_000)
      b.reapStagedUploads()
      XCTAssertEqual(b.stagedUploadBytes, buffers.count * n * 4)
    }
    let y = try b.allocate(n, .float32)
    try b.affine(buffers[3], y, scale: 2, shift: 0, count: n, dtype: .float32)
    XCTAssertEqual((b.traffic - before).hostSynchronizations, 0, "\(b.traffic - before)")
    for (buffer, values) in zip(buffers, expected) {
      XCTAssertEqual(try download(b, buffer, n, .float32), values.map(Double.init))
    }
    XCTAssertEqual(try download(b, y, n, .float32), expected[3].map { Double(2 * $0) })
    XCTAssertEqual(b.stagedUploadBytes, 0, "the copies are freed once the transfers are done")
  }

  // MARK: Element-wise

  func testFill() throws {
    let b = try backend()
    for t in dtypes(b) {
      for n in Self.sizes {
        let y = try poisoned(b, n, t)
        try b.fill(y, value: -2.5, count: n, dtype: t)
        XCTAssertEqual(try download(b, y, n, t), [Double](repeating: -2.5, count: n), "\(t) \(n)")
      }
    }
  }

  func unaryRef(_ op: UnaryOp, _ x: Double) -> Double {
    switch op {
    case .neg: return -x
    case .relu: return max(x, 0)
    case .tanh: return Foundation.tanh(x)
    case .sigmoid: return 1 / (1 + Foundation.exp(-x))
    case .softplus: return Foundation.log(1 + Foundation.exp(x))
    case .elu: return x > 0 ? x : Foundation.exp(x) - 1
    case .exp: return Foundation.exp(x)
    case .log: return Foundation.log(x)
    case .square: return x * x
    case .sqrt: return x.squareRoot()
    case .abs: return Swift.abs(x)
    case .reciprocal: return 1 / x
    }
  }

  func unaryDerivativeRef(_ op: UnaryOp, _ x: Double) -> Double {
    switch op {
    case .neg: return -1
    case .relu: return x > 0 ? 1 : 0
    case .tanh: return 1 / (Foundation.cosh(x) * Foundation.cosh(x))
    case .sigmoid:
      let e = Foundation.exp(-x)
      return e / ((1 + e) * (1 + e))
    case .softplus: return 1 / (1 + Foundation.exp(-x))
    case .elu: return x > 0 ? 1 : Foundation.exp(x)
    case .exp: return Foundation.exp(x)
    case .log: return 1 / x
    case .square: return 2 * x
    case .sqrt: return 0.5 / x.squareRoot()
    case .abs: return x > 0 ? 1 : x < 0 ? -1 : 0
    case .reciprocal: return -1 / (x * x)
    }
  }

  /// Inputs inside each function's domain; wide enough to reach both branches and the tails.
  func unaryInputs(_ op: UnaryOp, _ n: Int, _ t: DType) -> [Double] {
    switch op {
    case .log, .sqrt, .reciprocal: return random(n, 0.25...4, t)
    case .exp: return random(n, -5...5, t)
    default: return random(n, -6...6, t)
    }
  }

  func testUnaryAndGradients() throws {
    let b = try backend()
    try checkUnaryAndGradients(b, dtypes(b))
  }

  /// The CPU backend's element-wise functions (their Float32 tanh, exp and derivatives are
  /// polynomial approximations) against the same float64 references. Needs no OpenCL.
  func testUnaryAndGradientsOnCPUBackend() throws {
    try checkUnaryAndGradients(CPUBackend(), [.float32, .float64])
  }

  func checkUnaryAndGradients(_ b: any Backend, _ types: [DType]) throws {
    for t in types {
      for op in UnaryOp.allCases {
        for n in Self.sizes {
          let x = unaryInputs(op, n, t)
          let dy = random(n, -2...2, t)
          let bx = try upload(b, x, t)
          let y = try poisoned(b, n, t)
          try b.unary(op, bx, y, count: n, dtype: t)
          assertClose(try download(b, y, n, t), x.map { unaryRef(op, $0) }, t, "unary \(op) n=\(n)")
          let dx = try poisoned(b, n, t)
          try b.unaryGrad(op, x: bx, dy: try upload(b, dy, t), dx: dx, count: n, dtype: t)
          assertClose(
            try download(b, dx, n, t), zip(x, dy).map { unaryDerivativeRef(op, $0) * $1 }, t,
            "unaryGrad \(op) n=\(n)")
        }
      }
    }
  }

  func testUnaryStabilityAtExtremes() throws {
    let b = try backend()
    try checkUnaryStability(b, dtypes(b))
  }

  /// The same on the CPU backend, whose float32 tanh derivative has its own vector code.
  func testUnaryStabilityAtExtremesOnCPUBackend() throws {
    try checkUnaryStability(CPUBackend(), [.float32, .float64])
  }

  /// The CPU backend's float32 tanh and tanh' (vector code where the CPU has AVX2) element by
  /// element against float64 over a dense sweep of [−9, 9], tiny inputs and zero included:
  /// within 1e-6 relative (about 16 ulps; the approximations claim a few).
  func testFloat32TanhAccuracyOnCPUBackend() throws {
    let b = CPUBackend()
    var x = (0...9000).map { Double(Float(-9 + 18 * Double($0) / 9000)) }
    x += [0, 1e-6, -3e-5, 2e-4, -3.9e-4, 4.1e-4, 1e-3]
    let n = x.count
    let bx = try upload(b, x, .float32)
    let y = try poisoned(b, n, .float32)
    try b.unary(.tanh, bx, y, count: n, dtype: .float32)
    for (o, v) in zip(try download(b, y, n, .float32), x) {
      let r = Foundation.tanh(v)
      XCTAssertEqual(o, r, accuracy: 1e-6 * Swift.abs(r), "tanh(\(v)) [float32]")
    }
    let dx = try poisoned(b, n, .float32)
    try b.unaryGrad(
      .tanh, x: bx, dy: try upload(b, [Double](repeating: 1, count: n), .float32), dx: dx,
      count: n, dtype: .float32)
    for (o, v) in zip(try download(b, dx, n, .float32), x) {
      let r = unaryDerivativeRef(.tanh, v)
      XCTAssertEqual(o, r, accuracy: 1e-6 * r, "tanh'(\(v)) [float32]")
    }
  }

  func checkUnaryStability(_ b: any Backend, _ types: [DType]) throws {
    for t in types {
      let x: [Double] = [-200, -50, 0, 50, 200]
      let y = try poisoned(b, x.count, t)
      try b.unary(.sigmoid, try upload(b, x, t), y, count: x.count, dtype: t)
      let sg = try download(b, y, x.count, t)
      for (o, r) in zip(sg, x.map { rounded(unaryRef(.sigmoid, $0), t) }) {
        XCTAssertEqual(o, r, accuracy: 1e-6 * r, "sigmoid without overflow [\(t)]")
      }
      try b.unary(.softplus, try upload(b, x, t), y, count: x.count, dtype: t)
      let sp = try download(b, y, x.count, t)
      XCTAssertEqual(sp[4], 200, "softplus(200) = 200 without overflow [\(t)]")
      XCTAssertEqual(sp[0], 0, accuracy: 1e-30, "softplus(-200) ≈ 0 [\(t)]")
      // Derivatives in the tails, element by element (no cancellation in 1 − σ or 1 − tanh²).
      let tail: [Double] = [-15, -6, 6, 15]
      let dx = try poisoned(b, tail.count, t)
      for op in [UnaryOp.tanh, .sigmoid, .softplus, .elu] {
        try b.unaryGrad(
          op, x: try upload(b, tail, t), dy: try upload(b, [1, 1, 1, 1], t), dx: dx,
          count: tail.count, dtype: t)
        for (o, x) in zip(try download(b, dx, tail.count, t), tail) {
          let r = unaryDerivativeRef(op, x)
          XCTAssertEqual(o, r, accuracy: tolerance(t) * r, "\(op)'(\(x)) [\(t)]")
        }
      }
    }
  }

  func testAffine() throws {
    let b = try backend()
    for t in dtypes(b) {
      for n in Self.sizes {
        let x = random(n, -3...3, t)
        let y = try poisoned(b, n, t)
        try b.affine(try upload(b, x, t), y, scale: -1.75, shift: 0.5, count: n, dtype: t)
        assertClose(try download(b, y, n, t), x.map { -1.75 * $0 + 0.5 }, t, "affine n=\(n)")
      }
    }
  }

  func binaryRef(_ op: BinaryOp, _ a: Double, _ b: Double) -> Double {
    switch op {
    case .add: return a + b
    case .sub: return a - b
    case .mul: return a * b
    case .div: return a / b
    case .maximum: return max(a, b)
    }
  }

  func testBinaryDenseAndBroadcast() throws {
    let b = try backend()
    // (shape, a shape, b shape): the operand shapes broadcast to `shape`.
    let cases: [([Int], [Int], [Int])] = [
      ([1, 1, 1, 97], [1, 1, 1, 97], [1, 1, 1, 97]),  // dense
      ([1, 1, 13, 131], [1, 1, 13, 131], [1, 1, 13, 131]),  // dense
      ([2, 3, 7, 13], [2, 3, 7, 13], [1, 3, 1, 1]),  // per-channel bias
      ([2, 3, 7, 13], [1, 1, 1, 1], [2, 3, 7, 13]),  // scalar a
      ([7, 1, 13, 1], [7, 1, 1, 1], [1, 1, 13, 1]),  // outer product
      ([4, 64, 1, 5], [4, 1, 1, 5], [1, 64, 1, 1]),
      ([1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]),
    ]
    func strides(_ s: [Int], _ full: [Int]) -> [Int] {
      var st = [0, 0, 0, 0]
      var acc = 1
      for d in (0..<4).reversed() {
        st[d] = s[d] == 1 && full[d] != 1 ? 0 : acc
        acc *= s[d]
      }
      return st
    }
    for t in dtypes(b) {
      for (shape, sa, sb) in cases {
        let layout = BroadcastLayout(
          shape: shape, aStrides: strides(sa, shape), bStrides: strides(sb, shape))
        let av = random(sa.reduce(1, *), -3...3, t)
        // Away from zero, for div.
        let bv = random(sb.reduce(1, *), 0.5...3, t).map { rng.next() % 2 == 0 ? $0 : -$0 }
        let ba = try upload(b, av, t)
        let bb = try upload(b, bv, t)
        for op in BinaryOp.allCases {
          let out = try poisoned(b, layout.count, t)
          try b.binary(op, ba, bb, out, layout: layout, dtype: t)
          var ref: [Double] = []
          for i0 in 0..<shape[0] {
            for i1 in 0..<shape[1] {
              for i2 in 0..<shape[2] {
                for i3 in 0..<shape[3] {
                  let idx = [i0, i1, i2, i3]
                  let ia = (0..<4).reduce(0) { $0 + idx[$1] * layout.aStrides[$1] }
                  let ib = (0..<4).reduce(0) { $0 + idx[$1] * layout.bStrides[$1] }
                  ref.append(binaryRef(op, av[ia], bv[ib]))
                }
              }
            }
          }
          assertClose(
            try download(b, out, layout.count, t), ref, t, "binary \(op) \(shape) \(sa) \(sb)")
        }
      }
    }
  }

  /// The exact mask of the contract (see kernels/elementwise.cl), evaluated in double.
  func dropoutRef(_ i: Int, _ seed: UInt32, _ p: Double) -> Double {
    var h = UInt32(truncatingIfNeeded: i) &* 0x9E37_79B1 ^ seed
    h ^= h >> 16
    h = h &* 0x85EB_CA6B
    h ^= h >> 13
    h = h &* 0xC2B2_AE35
    h ^= h >> 16
    let u = Double(h >> 8) * (1.0 / 16_777_216.0)
    return u >= p ? 1 / (1 - p) : 0
  }

  func testDropoutMaskIsTheContractHash() throws {
    let b = try backend()
    for t in dtypes(b) {
      for (n, p, seed) in [
        (1031, 0.1, UInt32(7)), (97, 0.5, 0xDEAD_BEEF), (4096, 0.3, 0), (13, 0, 1), (64, 1, 2),
      ] {
        let y = try poisoned(b, n, t)
        try b.dropoutMask(y, count: n, p: p, seed: seed, dtype: t)
        let out = try download(b, y, n, t)
        let ref = (0..<n).map { rounded(dropoutRef($0, seed, p), t) }
        XCTAssertEqual(out, ref, "dropout n=\(n) p=\(p) seed=\(seed) [\(t)]")
        if n == 4096 {
          let kept = Double(out.filter { $0 != 0 }.count) / Double(n)
          XCTAssertEqual(kept, 1 - p, accuracy: 0.03, "kept fraction")
        }
      }
    }
  }

  // MARK: Reductions

  func testReduceSum() throws {
    let b = try backend()
    try checkReduceSum(b, dtypes(b))
  }

  /// The CPU backend's row sums (by rows of `inner` at a time, or per row when inner == 1,
  /// split over the cores when large) against the same references. Needs no OpenCL.
  func testReduceSumOnCPUBackend() throws {
    try checkReduceSum(CPUBackend(), [.float32, .float64])
  }

  func checkReduceSum(_ b: any Backend, _ types: [DType]) throws {
    // Every OpenCL path: a work-group per row (inner == 1, n > 32), rows split into parts (few
    // long rows: see OpenCLBackend.rowParts) and a work-item per column.
    let shapes = [
      (1, 1, 1), (7, 13, 1), (3, 97, 1), (2, 256, 1), (1, 1031, 1), (5, 7, 13), (1, 131, 64),
      (13, 1, 7), (2, 64, 3), (131, 33, 1), (1, 100_003, 1), (3, 65_537, 1),
    ]
    for t in types {
      for (outer, n, inner) in shapes {
        let x = random(outer * n * inner, -1...1, t)
        let y = try poisoned(b, outer * inner, t)
        let s = ReductionShape(outer: outer, n: n, inner: inner)
        try b.reduceSum(try upload(b, x, t), y, shape: s, scale: 0.5, dtype: t)
        var ref = [Double](repeating: 0, count: outer * inner)
        for o in 0..<outer {
          for j in 0..<n {
            for i in 0..<inner { ref[o * inner + i] += 0.5 * x[(o * n + j) * inner + i] }
          }
        }
        assertClose(try download(b, y, outer * inner, t), ref, t, "reduceSum \(s)")
      }
    }
  }

  func testSoftmaxCrossEntropy() throws {
    let b = try backend()
    try checkSoftmaxCrossEntropy(b, dtypes(b))
  }

  func checkSoftmaxCrossEntropy(_ b: OpenCLBackend, _ types: [DType]) throws {
    // Class counts on both sides of the row-per-work-item threshold.
    for t in types {
      for (rows, classes) in [
        (1, 1), (13, 7), (7, 13), (3, 97), (13, 131), (2, 64), (5, 256), (64, 10),
      ] {
        let logits = random(rows * classes, -8...8, t)
        let labels = (0..<rows).map { _ in Double(Int.random(in: 0..<classes, using: &rng)) }
        let probs = try poisoned(b, rows * classes, t)
        let losses = try poisoned(b, rows, t)
        try b.softmaxCrossEntropy(
          logits: try upload(b, logits, t), labels: try upload(b, labels, t), probs: probs,
          losses: losses, rows: rows, classes: classes, dtype: t)
        var refP: [Double] = []
        var refL: [Double] = []
        for r in 0..<rows {
          let row = logits[(r * classes)..<((r + 1) * classes)]
          let z = row.map { Foundation.exp($0) }.reduce(0, +)
          refP += row.map { Foundation.exp($0) / z }
          refL.append(-Foundation.log(Foundation.exp(row[r * classes + Int(labels[r])]) / z))
        }
        assertClose(
          try download(b, probs, rows * classes, t), refP, t, "softmax probs \(rows)×\(classes)")
        assertClose(try download(b, losses, rows, t), refL, t, "softmax losses \(rows)×\(classes)")
      }
    }
  }

  func testSoftmaxCrossEntropyIsStableForLargeLogits() throws {
    let b = try backend()
    for t in dtypes(b) {
      for classes in [3, 100] {
        // Row 0 puts all mass on its label; row 1 none (p underflows to 0, −log p is 2000).
        let logits = (0..<classes).map { $0 == 0 ? 1000.0 : -1000.0 }
        let twoRows = logits + logits.reversed()
        let probs = try poisoned(b, 2 * classes, t)
        let losses = try poisoned(b, 2, t)
        try b.softmaxCrossEntropy(
          logits: try upload(b, twoRows, t), labels: try upload(b, [0, 0], t), probs: probs,
          losses: losses, rows: 2, classes: classes, dtype: t)
        let l = try download(b, losses, 2, t)
        XCTAssertEqual(l[0], 0, accuracy: 1e-12, "[\(t)] loss of a certain correct class")
        XCTAssertEqual(l[1], 2000, accuracy: 1e-3, "[\(t)] finite loss though p underflows")
        let p = try download(b, probs, 2 * classes, t)
        XCTAssertEqual(p[0], 1, "[\(t)] no overflow in exp")
        XCTAssertEqual(p.reduce(0, +), 2, accuracy: 1e-6)
      }
    }
  }

  // MARK: GEMM

  /// Runs one GEMM case on `b` and checks all of C: the m×n blocks against the reference, every
  /// other element (ldc padding, gaps between batches) unchanged.
  func checkGEMM(_ b: any Backend, _ p: GEMMShape, _ t: DType, _ label: String) throws {
    let rowsA = p.transA ? p.k : p.m
    let rowsB = p.transB ? p.n : p.k
    let sizeA = p.offsetA + (p.batch - 1) * p.strideA + rowsA * p.lda
    let sizeB = p.offsetB + (p.batch - 1) * p.strideB + rowsB * p.ldb
    let sizeC = p.offsetC + (p.batch - 1) * p.strideC + p.m * p.ldc
    let a = random(sizeA, -1...1, t)
    let bm = random(sizeB, -1...1, t)
    // beta == 0 must not read C: poison it. Otherwise C holds values that count.
    let c0 = p.beta == 0 ? [Double](repeating: .nan, count: sizeC) : random(sizeC, -1...1, t)
    let bc = try upload(b, c0, t)
    try b.gemm(try upload(b, a, t), try upload(b, bm, t), bc, p, dtype: t)
    let out = try download(b, bc, sizeC, t)
    var covered = [Bool](repeating: false, count: sizeC)
    var got: [Double] = []
    var ref: [Double] = []
    for q in 0..<p.batch {
      for i in 0..<p.m {
        for j in 0..<p.n {
          var acc = 0.0
          for l in 0..<p.k {
            let ea = p.offsetA + q * p.strideA + (p.transA ? l * p.lda + i : i * p.lda + l)
            let eb = p.offsetB + q * p.strideB + (p.transB ? j * p.ldb + l : l * p.ldb + j)
            acc += a[ea] * bm[eb]
          }
          let ec = p.offsetC + q * p.strideC + i * p.ldc + j
          covered[ec] = true
          ref.append(p.alpha * acc + (p.beta == 0 ? 0 : p.beta * c0[ec]))
          got.append(out[ec])
        }
      }
    }
    assertClose(got, ref, t, label)
    for e in 0..<sizeC where !covered[e] {
      if !(out[e] == c0[e] || (out[e].isNaN && c0[e].isNaN)) {
        return XCTFail("\(label) [\(t)]: element \(e) outside C's matrices was overwritten")
      }
    }
  }

  func gemmCases() -> [(GEMMShape, String)] {
    var cases: [(GEMMShape, String)] = []
    let dims = [
      (1, 1, 1), (7, 13, 97), (64, 64, 64), (131, 97, 13), (13, 1, 131), (97, 131, 64), (5, 3, 0),
    ]
    for (m, n, k) in dims {
      for transA in [false, true] {
        for transB in [false, true] {
          for (alpha, beta) in [(1.0, 0.0), (-0.5, 0.75)] {
            cases.append(
              (
                GEMMShape(
                  m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha, beta: beta),
                "gemm m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) α=\(alpha) β=\(beta)"
              ))
          }
        }
      }
    }
    // Batched, with offsets, padded leading dimensions and gaps between the matrices.
    for transA in [false, true] {
      for transB in [false, true] {
        var p = GEMMShape(
          m: 13, n: 7, k: 97, transA: transA, transB: transB, alpha: 1.25, beta: 0.5, batch: 3)
        p.lda += 3
        p.ldb += 1
        p.ldc += 2
        p.strideA = (transA ? p.k : p.m) * p.lda + 5
        p.strideB = (transB ? p.n : p.k) * p.ldb + 1
        p.strideC = p.m * p.ldc + 7
        p.offsetA = 11
        p.offsetB = 3
        p.offsetC = 17
        cases.append((p, "batched gemm tA=\(transA) tB=\(transB)"))
      }
    }
    // A shared across the batch (stride 0), as a layer applied to many samples.
    var shared = GEMMShape(m: 64, n: 13, k: 7, beta: 0, batch: 4)
    shared.strideA = 0
    cases.append((shared, "batched gemm with shared A"))
    return cases
  }

  func testGEMMKernel() throws {
    let b = try backend(blas: false)
    for t in dtypes(b) {
      for (p, label) in gemmCases() { try checkGEMM(b, p, t, "kernel " + label) }
    }
  }

  /// The CPU backend's GEMM, which takes two routes: direct loops up to
  /// `CPUBackend.smallGEMMVolume` multiply-adds (their three forms: CSmallGEMM's AVX2 kernel for
  /// float32 where the CPU has it, the Swift loops for float64) and OpenBLAS above, split into
  /// panels across cores for large products. This test needs no OpenCL.
  func testGEMMOnCPUBackend() throws {
    let b = CPUBackend()
    var cases = gemmCases()
    // Small products whose rows or columns take more than one block of 32 (4 vectors of 8) in
    // the forms that block them, depths that are and are not whole vectors, and the shapes of a
    // Linear(2→50) layer at batch 20.
    let small = [
      (3, 70, 9), (70, 3, 9), (70, 1, 5), (9, 5, 16), (20, 50, 2), (20, 2, 50), (50, 2, 20),
    ]
    for (m, n, k) in small {
      for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
        for (alpha, beta) in [(1.0, 0.0), (-0.5, 0.75)] {
          cases.append(
            (
              GEMMShape(
                m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha, beta: beta),
              "small gemm m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) β=\(beta)"
            ))
        }
      }
    }
    for (m, n, k) in [(256, 9, 33), (3, 600, 40), (300, 300, 30)] {
      for (transA, transB) in [(false, false), (true, true)] {
        cases.append(
          (
            GEMMShape(m: m, n: n, k: k, transA: transA, transB: transB, alpha: 0.5, beta: 0.25),
            "large gemm m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB)"
          ))
      }
    }
    for t in [DType.float32, .float64] {
      for (p, label) in cases { try checkGEMM(b, p, t, "CPU " + label) }
    }
  }

  func testGEMMWithBLASOnCPUDevice() throws {
    let b = try backend(blas: true)
    if !b.usesBLASForGEMM { throw XCTSkip("device is not a CPU: gemm uses the kernel (tested)") }
    for t in dtypes(b) {
      for (p, label) in gemmCases() { try checkGEMM(b, p, t, "BLAS " + label) }
    }
  }

  /// The configurations a device with tighter limits than this one would get (smaller
  /// reduction work-groups, smaller GEMM tiles, down to one work-item per group), forced through
  /// `OpenCLBackend.Options`. float32 only: the code paths do not depend on the type.
  func testFallbackWorkGroupConfigurations() throws {
    _ = try backend()  // skips without OpenCL
    let tilings = [
      OpenCLBackend.GEMMTiling(ts: 32, wpt: 4, tsk: 16), .init(ts: 16, wpt: 2, tsk: 8),
      .init(ts: 4, wpt: 4, tsk: 4),
    ]
    for (wg, tile) in zip([32, 4, 1], tilings) {
      let backend = try OpenCLBackend(
        deviceIndex: Self.deviceIndex,
        options: .init(blasOnCPUDevice: false, reductionWorkGroupSize: wg, gemmTiling: tile))
      try checkReduceSum(backend, [.float32])
      try checkSoftmaxCrossEntropy(backend, [.float32])
      try checkGroupNorm(backend, [.float32])
      for (p, label) in gemmCases() where p.m * p.n * p.k <= 64 * 64 * 64 {
        try checkGEMM(backend, p, .float32, "tile \(tile) " + label)
      }
    }
  }

  /// The 8×8 register blockings `runner tune` may choose, on every GEMM case and on operands
  /// whose rows start on 4-element boundaries (so that the slabs are staged by aligned vector
  /// loads) while m, n and k are not multiples of 4 (so that the vectors at the edges are partial).
  func testEightByEightTilingsAndVectorLoads() throws {
    _ = try backend()  // skips without OpenCL
    var cases = gemmCases()
    for transA in [false, true] {
      for transB in [false, true] {
        var p = GEMMShape(
          m: 37, n: 45, k: 99, transA: transA, transB: transB, alpha: 0.5, beta: 0.25, batch: 2)
        p.lda = (transA ? p.m : p.k) + 5
        p.lda += (4 - p.lda % 4) % 4
        p.ldb = (transB ? p.k : p.n) + 2
        p.ldb += (4 - p.ldb % 4) % 4
        p.strideA = (transA ? p.k : p.m) * p.lda + 8
        p.strideB = (transB ? p.n : p.k) * p.ldb + 4
        p.offsetA = 4
        p.offsetB = 12
        XCTAssertTrue(p.alignsToVectors(a: true) && p.alignsToVectors(a: false))
        cases.append((p, "aligned gemm tA=\(transA) tB=\(transB)"))
      }
    }
    for tile in OpenCLBackend.GEMMTiling.tuningCandidates where tile.wpt == 8 {
      let b = try OpenCLBackend(
        deviceIndex: Self.deviceIndex, options: .init(blasOnCPUDevice: false, gemmTiling: tile))
      for t in dtypes(b) {
        for (p, label) in cases { try checkGEMM(b, p, t, "tile \(tile) " + label) }
      }
    }
  }

  /// Settings the kernels cannot run with are refused before any device is opened (they once
  /// reached a division by zero with the preconditions compiled out).
  func testInvalidOptionsAreRefused() {
    let invalid: [OpenCLBackend.Options] = [
      .init(reductionWorkGroupSize: 0), .init(reductionWorkGroupSize: 48),
      .init(reductionWorkGroupSize: -4), .init(gemmTiling: .init(ts: 0, wpt: 4, tsk: 4)),
      .init(gemmTiling: .init(ts: 16, wpt: 3, tsk: 8)),
      .init(gemmTiling: .init(ts: 16, wpt: 4, tsk: 0)),
      .init(gemmTiling: .init(ts: 1 << 40, wpt: 1 << 20, tsk: 8)),
      .init(gemmTiling: .init(ts: 512, wpt: 8, tsk: 8)),
    ]
    for options in invalid {
      XCTAssertThrowsError(try OpenCLBackend(deviceIndex: 0, options: options), "\(options)") {
        guard case BackendError.invalidOption = $0 else {
          return XCTFail("\(options): \($0) is not invalidOption")
        }
      }
    }
  }

  // MARK: Layout

  func testPermuteAllPermutations() throws {
    let b = try backend()
    let shape = [2, 3, 5, 7]
    var perms: [[Int]] = []
    func gen(_ prefix: [Int]) {
      if prefix.count == 4 { return perms.append(prefix) }
      for d in 0..<4 where !prefix.contains(d) { gen(prefix + [d]) }
    }
    gen([])
    for t in dtypes(b) {
      let x = random(shape.reduce(1, *), -1...1, t)
      let bx = try upload(b, x, t)
      for perm in perms + [[3, 2, 1, 0]] {
        let p = PermuteShape(shape: shape, perm: perm)
        let y = try poisoned(b, p.count, t)
        try b.permute(bx, y, p, dtype: t)
        let os = perm.map { shape[$0] }
        var ref: [Double] = []
        for j0 in 0..<os[0] {
          for j1 in 0..<os[1] {
            for j2 in 0..<os[2] {
              for j3 in 0..<os[3] {
                var i = [0, 0, 0, 0]
                for (d, j) in [j0, j1, j2, j3].enumerated() { i[perm[d]] = j }
                ref.append(x[((i[0] * shape[1] + i[1]) * shape[2] + i[2]) * shape[3] + i[3]])
              }
            }
          }
        }
        XCTAssertEqual(try download(b, y, p.count, t), ref, "permute \(perm) [\(t)]")
      }
    }
  }

  func testCopyBlocks() throws {
    let b = try backend()
    let cases = [
      BlockCopy(blocks: 1, length: 131, srcOffset: 0, srcStride: 0, dstOffset: 0, dstStride: 0),
      BlockCopy(blocks: 13, length: 7, srcOffset: 3, srcStride: 10, dstOffset: 5, dstStride: 20),
      BlockCopy(blocks: 97, length: 1, srcOffset: 0, srcStride: 2, dstOffset: 1, dstStride: 3),
      BlockCopy(
        blocks: 4, length: 256, srcOffset: 64, srcStride: 300, dstOffset: 0, dstStride: 512),
    ]
    for t in dtypes(b) {
      for p in cases {
        let srcSize = p.srcOffset + (p.blocks - 1) * p.srcStride + p.length
        let dstSize = p.dstOffset + (p.blocks - 1) * p.dstStride + p.length
        let x = random(srcSize, -1...1, t)
        let y0 = random(dstSize, 5...6, t)
        let y = try upload(b, y0, t)
        try b.copyBlocks(try upload(b, x, t), y, p, dtype: t)
        var ref = y0
        for blk in 0..<p.blocks {
          for i in 0..<p.length {
            ref[p.dstOffset + blk * p.dstStride + i] = x[p.srcOffset + blk * p.srcStride + i]
          }
        }
        XCTAssertEqual(try download(b, y, dstSize, t), ref, "copyBlocks \(p) [\(t)]")
      }
    }
  }

  // MARK: Convolution and pooling

  static let convCases = [
    ConvGeometry(n: 2, c: 3, h: 7, w: 5, kh: 3, kw: 3, stride: 1, pad: 1),
    ConvGeometry(n: 1, c: 2, h: 13, w: 13, kh: 2, kw: 3, stride: 2, pad: 0),
    ConvGeometry(n: 2, c: 1, h: 8, w: 8, kh: 1, kw: 1, stride: 1, pad: 0),
    ConvGeometry(n: 1, c: 3, h: 7, w: 9, kh: 5, kw: 5, stride: 3, pad: 2),
    ConvGeometry(n: 1, c: 1, h: 1, w: 1, kh: 1, kw: 1, stride: 1, pad: 0),
  ]

  /// The source index read by cols[row, col], or nil for padding.
  func im2colSource(_ g: ConvGeometry, row: Int, col: Int) -> Int? {
    let ow = col % g.outW
    let oh = (col / g.outW) % g.outH
    let n = col / (g.outW * g.outH)
    let j = row % g.kw
    let i = (row / g.kw) % g.kh
    let c = row / (g.kw * g.kh)
    let y = oh * g.stride - g.pad + i
    let z = ow * g.stride - g.pad + j
    guard y >= 0, y < g.h, z >= 0, z < g.w else { return nil }
    return ((n * g.c + c) * g.h + y) * g.w + z
  }

  func testIm2colAndCol2im() throws {
    let b = try backend()
    for t in dtypes(b) {
      for g in Self.convCases {
        let xCount = g.n * g.c * g.h * g.w
        let colCount = g.patch * g.columns
        let x = random(xCount, -1...1, t)
        let cols = try poisoned(b, colCount, t)
        try b.im2col(try upload(b, x, t), cols, g, dtype: t)
        var ref = [Double](repeating: 0, count: colCount)
        for r in 0..<g.patch {
          for c in 0..<g.columns {
            if let s = im2colSource(g, row: r, col: c) { ref[r * g.columns + c] = x[s] }
          }
        }
        XCTAssertEqual(try download(b, cols, colCount, t), ref, "im2col \(g) [\(t)]")

        // col2im is the adjoint: scatter-add of every cols entry to the pixel it read.
        let cv = random(colCount, -1...1, t)
        let dx = try poisoned(b, xCount, t)
        try b.col2im(try upload(b, cv, t), dx, g, dtype: t)
        var refX = [Double](repeating: 0, count: xCount)
        for r in 0..<g.patch {
          for c in 0..<g.columns {
            if let s = im2colSource(g, row: r, col: c) { refX[s] += cv[r * g.columns + c] }
          }
        }
        assertClose(try download(b, dx, xCount, t), refX, t, "col2im \(g)")
      }
    }
  }

  func testAvgPoolAndGradient() throws {
    let b = try backend()
    let cases = [
      PoolGeometry(n: 2, c: 3, h: 8, w: 8, k: 2, stride: 2),
      PoolGeometry(n: 1, c: 2, h: 7, w: 13, k: 3, stride: 2),  // overlapping, uncovered edge
      PoolGeometry(n: 1, c: 1, h: 13, w: 7, k: 3, stride: 1),
      PoolGeometry(n: 3, c: 1, h: 5, w: 5, k: 5, stride: 5),  // global pooling
      PoolGeometry(n: 1, c: 1, h: 1, w: 1, k: 1, stride: 1),
    ]
    for t in dtypes(b) {
      for g in cases {
        let xCount = g.n * g.c * g.h * g.w
        let yCount = g.n * g.c * g.outH * g.outW
        let x = random(xCount, -1...1, t)
        let y = try poisoned(b, yCount, t)
        try b.avgPool(try upload(b, x, t), y, g, dtype: t)
        var ref = [Double](repeating: 0, count: yCount)
        let dyv = random(yCount, -1...1, t)
        var refDX = [Double](repeating: 0, count: xCount)
        for plane in 0..<(g.n * g.c) {
          for oh in 0..<g.outH {
            for ow in 0..<g.outW {
              let o = (plane * g.outH + oh) * g.outW + ow
              for i in 0..<g.k {
                for j in 0..<g.k {
                  let e = (plane * g.h + oh * g.stride + i) * g.w + ow * g.stride + j
                  ref[o] += x[e] / Double(g.k * g.k)
                  refDX[e] += dyv[o] / Double(g.k * g.k)
                }
              }
            }
          }
        }
        assertClose(try download(b, y, yCount, t), ref, t, "avgPool \(g)")
        let dx = try poisoned(b, xCount, t)
        try b.avgPoolGrad(try upload(b, dyv, t), dx, g, dtype: t)
        assertClose(try download(b, dx, xCount, t), refDX, t, "avgPoolGrad \(g)")
      }
    }
  }

  // MARK: Group normalisation

  struct GroupNormRef {
    var y: [Double], mean: [Double], rstd: [Double]
  }

  func groupNormRef(_ x: [Double], _ gamma: [Double], _ beta: [Double], _ s: GroupNormShape)
    -> GroupNormRef
  {
    let cpg = s.c / s.groups
    let span = cpg * s.hw
    var y = [Double](repeating: 0, count: x.count)
    var mean: [Double] = []
    var rstd: [Double] = []
    for n in 0..<s.n {
      for g in 0..<s.groups {
        let base = (n * s.c + g * cpg) * s.hw
        let mu = x[base..<(base + span)].reduce(0, +) / Double(span)
        let v = x[base..<(base + span)].map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(span)
        let r = 1 / (v + s.eps).squareRoot()
        mean.append(mu)
        rstd.append(r)
        for e in 0..<span {
          let c = g * cpg + e / s.hw
          y[base + e] = (x[base + e] - mu) * r * gamma[c] + beta[c]
        }
      }
    }
    return GroupNormRef(y: y, mean: mean, rstd: rstd)
  }

  /// dx, dgamma, dbeta of L = Σ dy·y, by the chain rule through mean and rstd.
  func groupNormGradRef(
    _ x: [Double], _ gamma: [Double], _ dy: [Double], _ s: GroupNormShape
  ) -> (dx: [Double], dgamma: [Double], dbeta: [Double]) {
    let f = groupNormRef(x, gamma, [Double](repeating: 0, count: s.c), s)
    let cpg = s.c / s.groups
    let span = cpg * s.hw
    var dx = [Double](repeating: 0, count: x.count)
    var dgamma = [Double](repeating: 0, count: s.c)
    var dbeta = dgamma
    for n in 0..<s.n {
      for g in 0..<s.groups {
        let ng = n * s.groups + g
        let base = (n * s.c + g * cpg) * s.hw
        let mu = f.mean[ng]
        let r = f.rstd[ng]
        // ∂L/∂x̂ = dy·γ; x̂ = (x − μ)·r; ∂L/∂r = Σ dy·γ·(x − μ); ∂r/∂x = −r³(x − μ)/span;
        // ∂L/∂μ = −r Σ dy·γ (the path through r vanishes since Σ (x − μ) = 0).
        var dr = 0.0
        var dmu = 0.0
        for e in 0..<span {
          let c = g * cpg + e / s.hw
          dr += dy[base + e] * gamma[c] * (x[base + e] - mu)
          dmu -= dy[base + e] * gamma[c] * r
        }
        for e in 0..<span {
          let c = g * cpg + e / s.hw
          let d = x[base + e] - mu
          dx[base + e] =
            dy[base + e] * gamma[c] * r + dr * (-r * r * r * d / Double(span)) + dmu / Double(span)
          dgamma[c] += dy[base + e] * d * r
          dbeta[c] += dy[base + e]
        }
      }
    }
    return (dx, dgamma, dbeta)
  }

  func testGroupNormReferenceAgainstFiniteDifferences() {
    let s = GroupNormShape(n: 2, c: 4, hw: 5, groups: 2)
    let x = random(s.count, -1...1, .float64)
    let gamma = random(4, 0.5...1.5, .float64)
    let beta = random(4, -1...1, .float64)
    let dy = random(s.count, -1...1, .float64)
    let loss = { (x: [Double], gamma: [Double], beta: [Double]) in
      zip(self.groupNormRef(x, gamma, beta, s).y, dy).map { $0 * $1 }.reduce(0, +)
    }
    let g = groupNormGradRef(x, gamma, dy, s)
    let h = 1e-6
    for i in [0, 7, 19, 33] {
      var xp = x
      var xm = x
      xp[i] += h
      xm[i] -= h
      XCTAssertEqual(
        g.dx[i], (loss(xp, gamma, beta) - loss(xm, gamma, beta)) / (2 * h), accuracy: 1e-6)
    }
    for c in 0..<4 {
      var gp = gamma
      var gm = gamma
      var bp = beta
      var bm = beta
      gp[c] += h
      gm[c] -= h
      bp[c] += h
      bm[c] -= h
      XCTAssertEqual(g.dgamma[c], (loss(x, gp, beta) - loss(x, gm, beta)) / (2 * h), accuracy: 1e-6)
      XCTAssertEqual(
        g.dbeta[c], (loss(x, gamma, bp) - loss(x, gamma, bm)) / (2 * h), accuracy: 1e-6)
    }
  }

  func testGroupNormAndGradient() throws {
    let b = try backend()
    try checkGroupNorm(b, dtypes(b))
  }

  func checkGroupNorm(_ b: OpenCLBackend, _ types: [DType]) throws {
    let cases = [
      GroupNormShape(n: 2, c: 4, hw: 13, groups: 2),
      GroupNormShape(n: 1, c: 7, hw: 97, groups: 7),
      GroupNormShape(n: 3, c: 6, hw: 1, groups: 2),
      GroupNormShape(n: 2, c: 8, hw: 64, groups: 1),
      GroupNormShape(n: 1, c: 2, hw: 131, groups: 2),
      GroupNormShape(n: 2, c: 4, hw: 256, groups: 4, eps: 1e-3),
      GroupNormShape(n: 1, c: 1, hw: 1, groups: 1),
    ]
    for t in types {
      for s in cases {
        // An offset mean tests the two-pass variance.
        let x = random(s.count, 2...4, t)
        let gamma = random(s.c, 0.5...1.5, t)
        let beta = random(s.c, -1...1, t)
        let dy = random(s.count, -1...1, t)
        let ng = s.n * s.groups
        let bx = try upload(b, x, t)
        let bg = try upload(b, gamma, t)
        let y = try poisoned(b, s.count, t)
        let mean = try poisoned(b, ng, t)
        let rstd = try poisoned(b, ng, t)
        try b.groupNorm(
          x: bx, gamma: bg, beta: try upload(b, beta, t), y: y, mean: mean, rstd: rstd, s, dtype: t)
        let ref = groupNormRef(x, gamma, beta, s)
        assertClose(try download(b, y, s.count, t), ref.y, t, "groupNorm y \(s)")
        assertClose(try download(b, mean, ng, t), ref.mean, t, "groupNorm mean \(s)")
        assertClose(try download(b, rstd, ng, t), ref.rstd, t, "groupNorm rstd \(s)")

        let dx = try poisoned(b, s.count, t)
        let dgamma = try poisoned(b, s.c, t)
        let dbeta = try poisoned(b, s.c, t)
        try b.groupNormGrad(
          x: bx, gamma: bg, mean: mean, rstd: rstd, dy: try upload(b, dy, t), dx: dx,
          dgamma: dgamma, dbeta: dbeta, s, dtype: t)
        let g = groupNormGradRef(x, gamma, dy, s)
        if s.c / s.groups * s.hw > 1 {
          assertClose(try download(b, dx, s.count, t), g.dx, t, "groupNormGrad dx \(s)")
        } else {
          // A group of one element: x̂ ≡ 0, dx is rounding noise around 0.
          XCTAssertTrue(try download(b, dx, s.count, t).allSatisfy { Swift.abs($0) < 1e-3 })
        }
        assertClose(try download(b, dgamma, s.c, t), g.dgamma, t, "groupNormGrad dgamma \(s)")
        assertClose(try download(b, dbeta, s.c, t), g.dbeta, t, "groupNormGrad dbeta \(s)")
      }
    }
  }

  // MARK: Optimisers

  func optimizerRef(
    _ step: OptimizerStep, _ p: inout [Double], _ g: [Double], _ s1: inout [Double],
    _ s2: inout [Double]
  ) {
    for i in p.indices {
      switch step {
      case .sgd(let lr, let mom, let nesterov, let wd):
        let gi = g[i] + wd * p[i]
        s1[i] = mom * s1[i] + gi
        p[i] -= lr * (nesterov ? gi + mom * s1[i] : s1[i])
      case .adam(let lr, let b1, let b2, let eps, let wd, let decoupled, let t):
        var gi = g[i]
        if decoupled { p[i] -= lr * wd * p[i] } else { gi += wd * p[i] }
        s1[i] = b1 * s1[i] + (1 - b1) * gi
        s2[i] = b2 * s2[i] + (1 - b2) * gi * gi
        let mh = s1[i] / (1 - pow(b1, Double(t)))
        let vh = s2[i] / (1 - pow(b2, Double(t)))
        p[i] -= lr * mh / (vh.squareRoot() + eps)
      case .rmsprop(let lr, let alpha, let eps):
        s1[i] = alpha * s1[i] + (1 - alpha) * g[i] * g[i]
        p[i] -= lr * g[i] / (s1[i].squareRoot() + eps)
      }
    }
  }

  func testOptimizerSteps() throws {
    let b = try backend()
    let steps: [[OptimizerStep]] = [
      [.sgd(lr: 0.1, momentum: 0, nesterov: false, weightDecay: 0)],
      (1...2).map { _ in .sgd(lr: 0.05, momentum: 0.9, nesterov: false, weightDecay: 1e-2) },
      (1...2).map { _ in .sgd(lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0) },
      (1...3).map {
        .adam(
          lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled: false,
          step: $0)
      },
      (1...3).map {
        .adam(
          lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, decoupled: true, step: $0)
      },
      (1...2).map { _ in .rmsprop(lr: 1e-2, alpha: 0.99, eps: 1e-8) },
    ]
    for t in dtypes(b) {
      for n in [1, 13, 131, 256] {
        for seq in steps {
          var p = random(n, -1...1, t)
          var s1 = [Double](repeating: 0, count: n)
          var s2 = s1
          let bp = try upload(b, p, t)
          let b1 = try upload(b, s1, t)
          let b2 = try upload(b, s2, t)
          for step in seq {
            let g = random(n, -1...1, t)
            try b.optimizerStep(
              step, param: bp, grad: try upload(b, g, t), state1: b1, state2: b2, count: n,
              dtype: t)
            optimizerRef(step, &p, g, &s1, &s2)
          }
          assertClose(try download(b, bp, n, t), p, t, "\(seq[0]) ×\(seq.count) n=\(n) param")
          assertClose(try download(b, b1, n, t), s1, t, "\(seq[0]) n=\(n) state1")
          if case .adam = seq[0] {
            assertClose(try download(b, b2, n, t), s2, t, "\(seq[0]) n=\(n) state2")
          }
        }
      }
    }
  }

  // MARK: Types and lifetimes

  func testUnsupportedTypeIsAnError() throws {
    let b = try backend()
    if b.supports(.float64) { throw XCTSkip("device has fp64") }
    let y = try b.allocate(4, .float64)
    XCTAssertThrowsError(try b.fill(y, value: 1, count: 4, dtype: .float64)) { error in
      guard case BackendError.unsupportedType(.float64, _) = error else {
        return XCTFail("expected unsupportedType, got \(error)")
      }
    }
  }

  /// Kernel arguments are state on a shared `cl_kernel`: launches from many threads at once must
  /// not mix them up (the backend sets them and enqueues under one lock).
  func testConcurrentLaunchesKeepTheirArguments() throws {
    let b = try backend()
    final class Failures: @unchecked Sendable {
      let lock = NSLock()
      var messages: [String] = []
      func add(_ m: String) { lock.withLock { messages.append(m) } }
    }
    let failures = Failures()
    DispatchQueue.concurrentPerform(iterations: 8) { worker in
      do {
        for round in 0..<20 {
          let n = 97 + worker
          let scale = Double(worker + 1)
          let shift = Double(round)
          let x = try b.allocate(n, .float32)
          let y = try b.allocate(n, .float32)
          try b.fill(x, value: 2, count: n, dtype: .float32)
          try b.affine(x, y, scale: scale, shift: shift, count: n, dtype: .float32)
          var out = [Float](repeating: 0, count: n)
          try out.withUnsafeMutableBytes { try b.read(y, into: $0) }
          if out != [Float](repeating: Float(2 * scale + shift), count: n) {
            failures.add("worker \(worker) round \(round): \(out.prefix(3))…")
          }
        }
      } catch {
        failures.add("worker \(worker): \(error)")
      }
    }
    XCTAssertEqual(failures.messages, [])
  }

  func testPoolAccountsOpenCLBuffers() throws {
    let b = try backend()
    let before = b.pool.currentBytes
    do {
      let x = try b.allocate(1000, .float32)
      try b.fill(x, value: 3, count: 1000, dtype: .float32)
      XCTAssertGreaterThanOrEqual(b.pool.currentBytes - before, 4000)
      XCTAssertEqual(try download(b, x, 1000, .float32).reduce(0, +), 3000)
    }
    XCTAssertEqual(b.pool.currentBytes, before)
    // Empty work is legal and enqueues nothing.
    let e = try b.allocate(0, .float32)
    try b.fill(e, value: 1, count: 0, dtype: .float32)
    try b.synchronize()
  }
}
