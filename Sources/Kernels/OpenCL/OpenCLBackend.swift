import COpenCL
import Foundation
import Synchronization

/// The OpenCL backend: one context and one in-order command queue on one device, kernels from
/// `kernels/*.cl` (embedded as `KernelSources`) compiled on first use for each element type.
///
/// Operations are enqueued asynchronously; the in-order queue runs them in submission order, so a
/// result is visible to every later operation and to `read`, which blocks. Buffers are `cl_mem`
/// objects from a `BufferPool` over `clCreateBuffer`. A buffer returned to the pool while kernels
/// that use it are still queued is safe to hand out again: every later use is queued behind them.
///
/// `@unchecked Sendable` because the mutable state is guarded: the program cache is only touched
/// under `lock`, and kernel arguments (`clSetKernelArg` sets state on a `cl_kernel` shared by all
/// callers) are set and the kernel enqueued under that same lock, so concurrent launches cannot
/// interleave their arguments. Every other OpenCL call used here is thread-safe by the OpenCL 1.2
/// specification, and the in-order queue serialises the device work itself.
public final class OpenCLBackend: Backend, @unchecked Sendable {
  /// The device this backend computes on.
  public let device: OpenCLDevice
  public let name: String
  public let pool: BufferPool
  /// What the caller chose (see `Options`).
  public let options: Options
  /// The device's tiling from `options.tuning`, tried first when `options.gemmTiling` is nil.
  let tunedTiling: GEMMTiling?

  let deviceID: cl_device_id
  let contextHandle: ContextHandle
  let queue: cl_command_queue
  var context: cl_context { contextHandle.context }

  /// Guards `programs`, `resolved`, and kernel argument setting plus enqueueing.
  let lock = NSLock()
  /// Compiled programs by (name, options).
  private var programs: [ProgramKey: OpenCLProgram] = [:]
  /// The configuration chosen for each (program, element type): its program, tuning and kernel
  /// table, at `resolvedIndex`.
  private var resolved = [Resolved?](
    repeating: nil, count: ProgramName.allCases.count * DType.allCases.count)
  /// Programs loaded from `options.programCache` instead of compiled (under `lock`).
  private var programsFromCache = 0
  /// How many of the programs built so far came from the program cache.
  package var programsLoadedFromCache: Int { lock.withLock { programsFromCache } }
  private let counted = Mutex(DeviceTraffic())
  /// Host copies of uploads in flight (`write` does not wait for the device).
  private let staging = OpenCLUploadStaging()

  public var traffic: DeviceTraffic { counted.withLock { $0 } }

  /// Adds to the traffic counts.
  func count(
    launches: Int = 0, synchronizations: Int = 0, toDevice: Int = 0, fromDevice: Int = 0
  ) {
    counted.withLock {
      $0.launches += launches
      $0.hostSynchronizations += synchronizations
      $0.bytesToDevice += toDevice
      $0.bytesFromDevice += fromDevice
    }
  }

  /// Opens device `deviceIndex` of the flattened list of all devices of all platforms (the order
  /// of `OpenCLBackend.devices()`).
  ///
  /// Work-group sizes and the GEMM tiling are chosen from the device's and the compiled kernels'
  /// limits unless `options` forces them (for tuning, and for testing the fallbacks).
  public init(deviceIndex: Int = 0, options: Options = Options()) throws {
    try options.validate()
    let all = try OpenCLRuntime.allDevices()
    guard all.indices.contains(deviceIndex) else {
      throw BackendError.noSuchDevice(
        "opencl:\(deviceIndex) (\(all.count) OpenCL device\(all.count == 1 ? "" : "s") found)")
    }
    let (id, info) = all[deviceIndex]
    deviceID = id
    device = info
    self.options = options
    tunedTiling = options.gemmTiling == nil ? try options.tuning?.record(for: info)?.tiling : nil
    // Before any BLAS call.
    if options.blasOnCPUDevice && info.type == .cpu { _ = OpenBLASCore.name }
    name = "opencl:\(deviceIndex) \(info.name)"

    var err: cl_int = 0
    var dev: cl_device_id? = id
    // The driver reports asynchronous faults through this callback; they surface with the next
    // failing call (`checkReporting`). The handle keeps `messages` alive as long as the context.
    let messages = DriverMessages()
    let ctx = clCreateContext(
      nil, 1, &dev, DriverMessages.notify, Unmanaged.passUnretained(messages).toOpaque(), &err)
    try check(err, "clCreateContext")
    guard let ctx else { throw BackendError.openCL(call: "clCreateContext", code: err) }
    let handle = ContextHandle(ctx, messages: messages)
    contextHandle = handle
    // In-order (no CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE): the ordering guarantees of `Backend`
    // then need no events.
    let q = clCreateCommandQueue(ctx, id, 0, &err)
    try check(err, "clCreateCommandQueue")
    guard let q else { throw BackendError.openCL(call: "clCreateCommandQueue", code: err) }
    queue = q

    // The closures hold the context handle: the pool can outlive the backend (a live
    // DeviceBuffer keeps it), and its buffers need the context until they are released.
    pool = BufferPool(
      allocate: { bytes in
        var err: cl_int = 0
        let mem = clCreateBuffer(handle.context, cl_mem_flags(CL_MEM_READ_WRITE), bytes, nil, &err)
        try check(err, "clCreateBuffer(\(bytes) bytes)")
        guard let mem else { throw BackendError.openCL(call: "clCreateBuffer", code: err) }
        return .openCL(mem)
      },
      free: { allocation in
        _ = handle  // keeps the context alive while buffers exist
        clReleaseMemObject(allocation.mem)
      })
  }

  deinit {
    clFinish(queue)
    staging.releaseAll()
    pool.trim()
    lock.withLock {
      resolved = []
      programs = [:]
    }
    clReleaseCommandQueue(queue)
  }

  /// Every OpenCL device of every platform, in the order `opencl:N` numbers them; empty (rather
  /// than an error) when no OpenCL platform is installed or discovery fails.
  public static func devices() -> [OpenCLDevice] {
    (try? OpenCLRuntime.allDevices().map(\.info)) ?? []
  }

  public func supports(_ dtype: DType) -> Bool {
    dtype == .float32 || device.supportsFP64
  }

  /// Enqueues the transfer and returns without waiting: the bytes are copied first
  /// (`OpenCLUploadStaging`), so the caller may reuse its memory at once, and later work on the
  /// in-order queue sees the data. Only when the copies held for transfers in flight pass the
  /// staging limit does the host wait.
  public func write(_ bytes: UnsafeRawBufferPointer, to buffer: DeviceBuffer) throws {
    precondition(bytes.count <= buffer.byteCount, "write of \(bytes.count) bytes overflows buffer")
    guard bytes.baseAddress != nil, bytes.count > 0 else { return }
    let staged = staging.copy(bytes)
    var event: cl_event?
    let code = clEnqueueWriteBuffer(
      queue, buffer.allocation.mem, cl_bool(CL_FALSE), 0, bytes.count, staged, 0, nil, &event)
    guard code == CL_SUCCESS, let event else {
      staging.discard(staged)
      return try checkReporting(code, "clEnqueueWriteBuffer")
    }
    count(toDevice: bytes.count)
    if staging.hold(staged, byteCount: bytes.count, until: event) {
      try synchronize()
    }
  }

  public func read(_ buffer: DeviceBuffer, into bytes: UnsafeMutableRawBufferPointer) throws {
    precondition(bytes.count <= buffer.byteCount, "read of \(bytes.count) bytes overflows buffer")
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    try checkReporting(
      clEnqueueReadBuffer(
        queue, buffer.allocation.mem, cl_bool(CL_TRUE), 0, bytes.count, base, 0, nil, nil),
      "clEnqueueReadBuffer")
    count(synchronizations: 1, fromDevice: bytes.count)
    staging.reap()
  }

  public func synchronize() throws {
    try checkReporting(clFinish(queue), "clFinish")
    count(synchronizations: 1)
    staging.releaseAll()
  }

  /// Host bytes still held for uploads that may be in flight (see `write`).
  package var stagedUploadBytes: Int { staging.heldBytes }

  /// Frees the staged copies whose transfers have completed (`read` does this itself).
  package func reapStagedUploads() { staging.reap() }

  /// Runs `body` while the queue is held behind a user event, so that nothing `body` enqueues
  /// can run before it returns: for tests of what asynchronous calls may rely on. `body` must
  /// not wait for the device.
  package func withQueueHeld<T>(_ body: () throws -> T) throws -> T {
    var err: cl_int = 0
    guard let gate = clCreateUserEvent(context, &err), err == CL_SUCCESS else {
      throw BackendError.openCL(call: "clCreateUserEvent", code: err)
    }
    defer { clReleaseEvent(gate) }
    var wait: cl_event? = gate
    try checkReporting(
      clEnqueueBarrierWithWaitList(queue, 1, &wait, nil), "clEnqueueBarrierWithWaitList")
    defer { clSetUserEventStatus(gate, cl_int(CL_COMPLETE)) }
    return try body()
  }

  /// Compiles `source` as program `name` with `options` (cached by name and options, like the
  /// built-in programs) and returns the names of its kernels. Public so that tests and tools can
  /// check that kernels compile on a device; a failed build throws
  /// `BackendError.kernelBuildFailed` with the compiler's log.
  @discardableResult
  public func buildProgram(source: String, name: String, options: String) throws -> [String] {
    try lock.withLock { try cachedProgram(source: source, name: name, options: options) }
      .kernels.keys.sorted()
  }
}

/// Owns the `cl_context`, released when the backend and every pool closure have let it go, and
/// what its driver reported.
final class ContextHandle: @unchecked Sendable {
  let context: cl_context
  let messages: DriverMessages
  init(_ context: cl_context, messages: DriverMessages) {
    self.context = context
    self.messages = messages
  }
  deinit { clReleaseContext(context) }
}

/// The messages an OpenCL driver passes to the context's error callback, from any of its
/// threads: an asynchronous fault (a kernel's invalid access on some drivers) is reported there,
/// while the call that returns an error may come later and say less. `@unchecked Sendable`: the
/// list is only touched under `lock`.
package final class DriverMessages: @unchecked Sendable {
  private let lock = NSLock()
  private var pending: [String] = []

  package init() {}

  /// Keeps the most recent few: a driver that repeats itself must not grow memory.
  package func record(_ message: String) {
    lock.withLock {
      pending.append(message)
      if pending.count > 8 { pending.removeFirst() }
    }
  }

  /// The messages since the last call, oldest first.
  package func drain() -> [String] {
    lock.withLock {
      defer { pending = [] }
      return pending
    }
  }

  /// The context's `pfn_notify`: user data is the `DriverMessages` (unretained; the context
  /// handle owns it).
  package static let notify:
    @convention(c) (
      UnsafePointer<CChar>?, UnsafeRawPointer?, Int, UnsafeMutableRawPointer?
    ) -> Void = { info, _, _, user in
      guard let info, let user else { return }
      Unmanaged<DriverMessages>.fromOpaque(user).takeUnretainedValue()
        .record(String(cString: info))
    }
}

extension OpenCLBackend {
  /// `check`, with what the driver reported through the context's callback since the last
  /// failure appended to the error.
  package func checkReporting(_ code: cl_int, _ call: @autoclosure () -> String) throws {
    guard code != CL_SUCCESS else { return }
    let reported = contextHandle.messages.drain()
    let suffix =
      reported.isEmpty ? "" : " (the driver reported: \(reported.joined(separator: "; ")))"
    throw BackendError.openCL(call: call() + suffix, code: code)
  }
}

// MARK: - Programs and launches

/// The programs built from `kernels/*.cl`, named like their files.
package enum ProgramName: Int, CaseIterable {
  case elementwise, layout, reduce, gemm, conv, norm, optim, solver

  /// The source file's name, without `.cl`.
  package var fileName: String { String(describing: self) }
}

/// A kernel argument; `.real` is passed as the launch's element type.
enum KernelArg {
  case mem(DeviceBuffer)
  case int(Int)
  case uint(UInt32)
  case real(Double)
}

private struct ProgramKey: Hashable {
  var name: String
  var options: String
}

/// A built-in program as configured for one element type.
struct Resolved {
  let program: OpenCLProgram
  /// The work-group size the program's reductions were compiled for (-D WG), if any.
  let workGroup: Int
  /// The GEMM tiling compiled in, for `gemm`.
  let tiling: OpenCLBackend.GEMMTiling?
  /// The 1-D work-group size for kernels that fix none.
  let flatLocal: Int
  /// The program's kernels, indexed by `OpenCLKernel.rawValue` (nil for other programs' kernels).
  let kernels: [cl_kernel?]

  init(
    program: OpenCLProgram, workGroup: Int, tiling: OpenCLBackend.GEMMTiling?, flatLocal: Int,
    name: ProgramName
  ) {
    self.program = program
    self.workGroup = workGroup
    self.tiling = tiling
    self.flatLocal = flatLocal
    var table = [cl_kernel?](repeating: nil, count: OpenCLKernel.allCases.count)
    for k in OpenCLKernel.of(name) {
      guard let handle = program.kernels[k.name] else {
        preconditionFailure("kernel \(k.name) missing from program \(name.fileName)")
      }
      table[k.rawValue] = handle
    }
    kernels = table
  }
}

extension OpenCLBackend {
  /// Builds or returns the cached program; the caller holds `lock`.
  fileprivate func cachedProgram(source: String, name: String, options: String) throws
    -> OpenCLProgram
  {
    let key = ProgramKey(name: name, options: options)
    if let p = programs[key] { return p }
    let (p, fromCache) = try OpenCLProgram.build(
      context: context, device: deviceID, deviceInfo: device, source: source, name: name,
      options: options, cache: self.options.programCache)
    if fromCache { programsFromCache += 1 }
    programs[key] = p
    return p
  }

  func requireType(_ dtype: DType) throws {
    if !supports(dtype) { throw BackendError.unsupportedType(dtype, backend: name) }
  }

  /// The options every program gets: the element type, and nothing that trades accuracy for speed
  /// (float64 results are checked to 1e-12).
  private func baseOptions(_ dtype: DType) -> String {
    switch dtype {
    case .float32: return "-cl-std=CL1.2 -D T=float"
    case .float64: return "-cl-std=CL1.2 -D T=double -D USE_FP64=1"
    }
  }

  /// Power-of-two work-group sizes for the local-memory reductions, largest first, within what the
  /// device allows for a 1-D group.
  private var reductionWorkGroups: [Int] {
    let limit = min(device.maxWorkGroupSize, device.maxWorkItemSizes.first ?? 1)
    return [256, 128, 64, 32, 16, 8, 4, 2, 1].filter { $0 <= limit }
  }

  /// The program `name` for `dtype`, configured with the largest tuning whose work-group size the
  /// device and the compiled kernels (`CL_KERNEL_WORK_GROUP_SIZE`, which register pressure can
  /// lower) allow. Caller holds `lock`.
  private func resolve(_ name: ProgramName, _ dtype: DType) throws -> Resolved {
    let key = name.rawValue * DType.allCases.count + (dtype == .float32 ? 0 : 1)
    if let r = resolved[key] { return r }
    guard let body = KernelSources.all[name.fileName], let prelude = KernelSources.all["prelude"]
    else {
      preconditionFailure("kernel source \(name.fileName) missing: run scripts/embed-kernels.sh")
    }
    // Every program starts with the shared prelude (element type, fp64 pragma, WG default).
    let source = prelude + body
    let base = baseOptions(dtype)
    let flat = { (p: OpenCLProgram) in
      max(1, min(256, p.maxWorkGroupSize, self.device.maxWorkGroupSize))
    }
    var result: Resolved?
    switch name {
    case .reduce, .norm, .solver:
      for wg in options.reductionWorkGroupSize.map({ [$0] }) ?? reductionWorkGroups {
        let p = try cachedProgram(
          source: source, name: name.fileName, options: base + " -D WG=\(wg)")
        if p.maxWorkGroupSize >= wg {
          result = Resolved(
            program: p, workGroup: wg, tiling: nil, flatLocal: flat(p), name: name)
          break
        }
      }
    case .gemm:
      let sizes = device.maxWorkItemSizes
      // A tuned tiling that does not fit this element type (float64 needs twice the local
      // memory) falls back to the defaults; a forced one does not.
      for t in options.gemmTiling.map({ [$0] })
        ?? (tunedTiling.map { [$0] } ?? []) + GEMMTiling.candidates
      where t.threads <= device.maxWorkGroupSize && sizes.count >= 2
        && t.threadsPerDim <= min(sizes[0], sizes[1])
        && t.localBytes(dtype) <= device.localMemBytes
      {
        let p = try cachedProgram(
          source: source, name: name.fileName,
          options: base + " -D TS=\(t.ts) -D WPT=\(t.wpt) -D TSK=\(t.tsk)")
        if p.maxWorkGroupSize >= t.threads {
          result = Resolved(
            program: p, workGroup: t.threads, tiling: t, flatLocal: flat(p), name: name)
          break
        }
      }
    default:
      let p = try cachedProgram(source: source, name: name.fileName, options: base)
      result = Resolved(
        program: p, workGroup: 0, tiling: nil, flatLocal: flat(p), name: name)
    }
    guard let result else {
      throw BackendError.openCL(
        call: "choosing a work-group size for '\(name.fileName)' on \(self.name): none fits",
        code: CL_INVALID_WORK_GROUP_SIZE)
    }
    resolved[key] = result
    return result
  }

  /// The GEMM kernel's tiling for `dtype` (building the program if needed), and where it came
  /// from. The convolution kernels share it; `gemm` itself goes to OpenBLAS when
  /// `usesBLASForGEMM`.
  public func gemmTiling(for dtype: DType) throws -> (
    tiling: GEMMTiling, origin: GEMMTilingOrigin
  ) {
    guard let t = try configuration(.gemm, dtype).tiling else {
      preconditionFailure("gemm program resolved without tiling")
    }
    let origin: GEMMTilingOrigin =
      options.gemmTiling != nil ? .forced : t == tunedTiling ? .tuned : .largestThatFits
    return (t, origin)
  }

  /// The configuration of a built-in program (building it if needed).
  func configuration(_ name: ProgramName, _ dtype: DType) throws -> Resolved {
    try lock.withLock { try resolve(name, dtype) }
  }

  /// Enqueues `kernel` over `global` work-items (1 to 3 dimensions), each dimension rounded up to
  /// a multiple of `local` (the kernels guard the excess). `local` nil means 1-D groups of the
  /// program's flat size. Nothing is enqueued for an empty range.
  ///
  /// The arguments and sizes are inline arrays, so that a launch allocates nothing: the kernel
  /// comes from the program's table and the sizes are passed from the stack.
  func launch<let argumentCount: Int, let dimensions: Int>(
    _ kernel: OpenCLKernel, _ dtype: DType, _ args: InlineArray<argumentCount, KernelArg>,
    global: InlineArray<dimensions, Int>, local: InlineArray<dimensions, Int>? = nil
  ) throws {
    precondition((1...3).contains(dimensions), "a launch has 1 to 3 dimensions")
    precondition(local != nil || dimensions == 1, "a multi-dimensional launch needs its groups")
    try requireType(dtype)
    for d in global.indices where global[d] == 0 { return }
    try lock.withLock {
      let r = try resolve(kernel.program, dtype)
      guard let k = r.kernels[kernel.rawValue] else {
        preconditionFailure("kernel \(kernel.name) missing from program \(kernel.program)")
      }
      // size_t[3] for clEnqueueNDRangeKernel, of which the first `dimensions` are used.
      var g: (Int, Int, Int) = (1, 1, 1)
      var l: (Int, Int, Int) = (1, 1, 1)
      try withUnsafeMutableBytes(of: &g) { gBytes in
        try withUnsafeMutableBytes(of: &l) { lBytes in
          let gs = gBytes.bindMemory(to: Int.self)
          let ls = lBytes.bindMemory(to: Int.self)
          for d in 0..<dimensions {
            let n = global[d]
            let size = local?[d] ?? r.flatLocal
            // Rounded up to whole work-groups, a range just below 2³¹ would give work-items ids
            // that wrap when a kernel reads them as int.
            let (rounded, overflow) = ((n + size - 1) / size).multipliedReportingOverflow(by: size)
            guard !overflow, rounded <= Int(Int32.max) else {
              throw BackendError.indexRangeExceeded(
                kernel: kernel.name, reason: "a range of \(n) work-items in groups of \(size)")
            }
            gs[d] = rounded
            ls[d] = size
          }
          for i in args.indices {
            try setArg(k, i, args[i], dtype, kernel)
          }
          try checkReporting(
            clEnqueueNDRangeKernel(
              queue, k, cl_uint(dimensions), nil, gs.baseAddress, ls.baseAddress, 0, nil, nil),
            "clEnqueueNDRangeKernel(\(kernel.name))")
        }
      }
    }
    count(launches: 1)
  }

  private func setArg(
    _ k: cl_kernel, _ index: Int, _ arg: KernelArg, _ dtype: DType, _ kernel: OpenCLKernel
  ) throws {
    let i = cl_uint(index)
    let code: cl_int
    switch arg {
    case .mem(let b):
      guard b.byteCount / dtype.size <= Int(Int32.max) else {
        throw BackendError.indexRangeExceeded(
          kernel: kernel.name, reason: "a buffer of \(b.byteCount / dtype.size) elements")
      }
      var m: cl_mem? = b.allocation.mem
      code = clSetKernelArg(k, i, MemoryLayout<cl_mem>.size, &m)
    case .int(let v):
      guard let narrow = Int32(exactly: v) else {
        throw BackendError.indexRangeExceeded(
          kernel: kernel.name, reason: "argument \(index) = \(v)")
      }
      var x = cl_int(narrow)
      code = clSetKernelArg(k, i, MemoryLayout<cl_int>.size, &x)
    case .uint(let v):
      var x = cl_uint(v)
      code = clSetKernelArg(k, i, MemoryLayout<cl_uint>.size, &x)
    case .real(let v):
      switch dtype {
      case .float32:
        var x = Float(v)
        code = clSetKernelArg(k, i, MemoryLayout<Float>.size, &x)
      case .float64:
        var x = v
        code = clSetKernelArg(k, i, MemoryLayout<Double>.size, &x)
      }
    }
    try check(code, "clSetKernelArg(\(kernel.name), \(index))")
  }
}
