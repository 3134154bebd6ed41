import COpenCL
import Foundation

/// Throws `BackendError.openCL` unless `code` is `CL_SUCCESS`.
@inline(__always)
func check(_ code: cl_int, _ call: @autoclosure () -> String) throws {
  if code != CL_SUCCESS { throw BackendError.openCL(call: call(), code: code) }
}

/// The kind of an OpenCL device, from `CL_DEVICE_TYPE`.
public enum OpenCLDeviceType: String, Sendable, Equatable {
  case gpu, cpu, accelerator, other
}

/// What `OpenCLBackend.devices()` reports about one device. `index` is the device's position in
/// the flattened list of all devices of all platforms, the number `opencl:N` selects.
public struct OpenCLDevice: Sendable, Equatable, CustomStringConvertible {
  public var index: Int
  public var platformName: String
  public var name: String
  public var vendor: String
  public var type: OpenCLDeviceType
  public var computeUnits: Int
  public var maxWorkGroupSize: Int
  /// Per-dimension limits on the work-group shape.
  public var maxWorkItemSizes: [Int]
  public var localMemBytes: Int
  public var globalMemBytes: Int
  /// The alignment in bytes of a sub-buffer's origin (`CL_DEVICE_MEM_BASE_ADDR_ALIGN`, in bits
  /// there).
  public var baseAddressAlignment: Int
  /// Whether the device computes in double precision (`cl_khr_fp64`).
  public var supportsFP64: Bool
  /// `CL_DEVICE_VERSION`, e.g. `OpenCL 3.0 CUDA`.
  public var version: String
  public var driverVersion: String

  /// One line: name, type, platform and limits (without the `opencl:N` prefix).
  public var summary: String {
    let gib = Double(globalMemBytes) / Double(1 << 30)
    return "\(name) [\(type.rawValue), \(platformName), \(version), \(computeUnits) CUs, "
      + "\(String(format: "%.1f", gib)) GiB, local \(localMemBytes / 1024) KiB, "
      + "max work-group \(maxWorkGroupSize), fp64 \(supportsFP64 ? "yes" : "no")]"
  }

  public var description: String { "opencl:\(index) \(summary)" }
}

/// Platform and device discovery, and typed wrappers over the `clGet*Info` queries.
enum OpenCLRuntime {
  /// Every device of every platform, in platform order then device order. Throws
  /// `noOpenCLPlatform` when the ICD loader finds no platform.
  static func allDevices() throws -> [(id: cl_device_id, info: OpenCLDevice)] {
    var platformCount: cl_uint = 0
    let code = clGetPlatformIDs(0, nil, &platformCount)
    // The ICD loader answers CL_PLATFORM_NOT_FOUND_KHR (-1001) when no vendor ICD is installed.
    if code == -1001 || platformCount == 0 { throw BackendError.noOpenCLPlatform }
    try check(code, "clGetPlatformIDs")
    var platforms = [cl_platform_id?](repeating: nil, count: Int(platformCount))
    try check(clGetPlatformIDs(platformCount, &platforms, nil), "clGetPlatformIDs")

    var result: [(id: cl_device_id, info: OpenCLDevice)] = []
    for case let platform? in platforms {
      let platformName = (try? platformString(platform, cl_platform_info(CL_PLATFORM_NAME))) ?? "?"
      var deviceCount: cl_uint = 0
      let dc = clGetDeviceIDs(
        platform, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &deviceCount)
      // A platform without devices is not an error for discovery.
      if dc == CL_DEVICE_NOT_FOUND || deviceCount == 0 { continue }
      try check(dc, "clGetDeviceIDs")
      var ids = [cl_device_id?](repeating: nil, count: Int(deviceCount))
      try check(
        clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), deviceCount, &ids, nil),
        "clGetDeviceIDs")
      for case let id? in ids {
        result.append((id, try describe(id, index: result.count, platformName: platformName)))
      }
    }
    return result
  }

  static func describe(_ id: cl_device_id, index: Int, platformName: String) throws
    -> OpenCLDevice
  {
    let type: cl_device_type = try deviceValue(id, CL_DEVICE_TYPE)
    let kind: OpenCLDeviceType =
      type & cl_device_type(CL_DEVICE_TYPE_GPU) != 0
      ? .gpu
      : type & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0
        ? .accelerator
        : type & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 ? .cpu : .other
    // OpenCL 1.2 drivers without double precision may reject the query itself (CL_INVALID_VALUE):
    // that means no fp64, not an unusable device (which would hide every device from the list).
    let fp64Config: cl_device_fp_config =
      (try? deviceValue(id, CL_DEVICE_DOUBLE_FP_CONFIG)) ?? 0
    let extensions = (try? deviceString(id, CL_DEVICE_EXTENSIONS)) ?? ""
    let dims: cl_uint = try deviceValue(id, CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS)
    var sizes = [Int](repeating: 0, count: Int(dims))
    try check(
      clGetDeviceInfo(
        id, cl_device_info(CL_DEVICE_MAX_WORK_ITEM_SIZES), MemoryLayout<Int>.stride * sizes.count,
        &sizes, nil), "clGetDeviceInfo(CL_DEVICE_MAX_WORK_ITEM_SIZES)")
    return OpenCLDevice(
      index: index,
      platformName: platformName,
      name: try deviceString(id, CL_DEVICE_NAME),
      vendor: try deviceString(id, CL_DEVICE_VENDOR),
      type: kind,
      computeUnits: Int(try deviceValue(id, CL_DEVICE_MAX_COMPUTE_UNITS) as cl_uint),
      maxWorkGroupSize: try deviceValue(id, CL_DEVICE_MAX_WORK_GROUP_SIZE) as Int,
      maxWorkItemSizes: sizes,
      localMemBytes: Int(try deviceValue(id, CL_DEVICE_LOCAL_MEM_SIZE) as cl_ulong),
      globalMemBytes: Int(try deviceValue(id, CL_DEVICE_GLOBAL_MEM_SIZE) as cl_ulong),
      baseAddressAlignment: max(
        1, Int(try deviceValue(id, CL_DEVICE_MEM_BASE_ADDR_ALIGN) as cl_uint) / 8),
      supportsFP64: fp64Config != 0 || extensions.split(separator: " ").contains("cl_khr_fp64"),
      version: try deviceString(id, CL_DEVICE_VERSION),
      driverVersion: try deviceString(id, CL_DRIVER_VERSION))
  }

  /// A fixed-size `clGetDeviceInfo` value (`size_t` reads as `Int`).
  static func deviceValue<V>(_ id: cl_device_id, _ param: Int32) throws -> V {
    let p = UnsafeMutablePointer<V>.allocate(capacity: 1)
    defer { p.deallocate() }
    try check(
      clGetDeviceInfo(id, cl_device_info(param), MemoryLayout<V>.size, p, nil),
      "clGetDeviceInfo(\(param))")
    return p.pointee
  }

  static func deviceString(_ id: cl_device_id, _ param: Int32) throws -> String {
    try string { clGetDeviceInfo(id, cl_device_info(param), $0, $1, $2) }
  }

  static func platformString(_ id: cl_platform_id, _ param: cl_platform_info) throws -> String {
    try string { clGetPlatformInfo(id, param, $0, $1, $2) }
  }

  /// The two-call pattern of the info queries: ask for the size, then for the bytes.
  static func string(
    _ query: (Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> cl_int
  ) throws -> String {
    var size = 0
    try check(query(0, nil, &size), "clGet*Info(size)")
    var bytes = [UInt8](repeating: 0, count: max(1, size))
    try check(bytes.withUnsafeMutableBytes { query(size, $0.baseAddress, nil) }, "clGet*Info")
    // The value is NUL-terminated; some drivers also pad with spaces.
    let text = bytes.prefix { $0 != 0 }
    return String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespaces)
  }
}

/// A compiled program with every kernel it defines.
final class OpenCLProgram {
  let program: cl_program
  let kernels: [String: cl_kernel]
  /// The smallest `CL_KERNEL_WORK_GROUP_SIZE` among the kernels: what the compiled code allows.
  let maxWorkGroupSize: Int

  init(program: cl_program, kernels: [String: cl_kernel], maxWorkGroupSize: Int) {
    self.program = program
    self.kernels = kernels
    self.maxWorkGroupSize = maxWorkGroupSize
  }

  deinit {
    for k in kernels.values { clReleaseKernel(k) }
    clReleaseProgram(program)
  }

  /// Builds `source` for `device`, creating all its kernels. Build failures carry the compiler's
  /// log in `BackendError.kernelBuildFailed`. With a `cache`, a binary stored by an earlier
  /// process for the same device, driver, source and options is loaded instead of compiling
  /// (`fromCache` says which happened), and a fresh build is stored.
  static func build(
    context: cl_context, device: cl_device_id, deviceInfo: OpenCLDevice, source: String,
    name: String, options: String, cache: OpenCLProgramCache?
  ) throws -> (program: OpenCLProgram, fromCache: Bool) {
    let key = cache?.key(device: deviceInfo, source: source, options: options)
    if let cache, let key, let binary = cache.load(key),
      let program = try? fromBinary(
        binary, context: context, device: device, name: name, options: options)
    {
      return (program, true)
    }
    let program = try fromSource(
      source, context: context, device: device, name: name, options: options)
    if let cache, let key, let binary = try? binary(of: program.program) {
      cache.store(binary, key: key)
    }
    return (program, false)
  }

  static func fromSource(
    _ source: String, context: cl_context, device: cl_device_id, name: String, options: String
  ) throws -> OpenCLProgram {
    var err: cl_int = 0
    let created: cl_program? = source.withCString { src in
      var p: UnsafePointer<CChar>? = src
      return clCreateProgramWithSource(context, 1, &p, nil, &err)
    }
    try check(err, "clCreateProgramWithSource(\(name))")
    guard let program = created else {
      throw BackendError.openCL(call: "clCreateProgramWithSource", code: err)
    }
    return try finish(program, device: device, name: name, options: options)
  }

  /// A program from a device binary; throws if the driver rejects it (another driver's, or
  /// damaged), so the caller compiles instead.
  static func fromBinary(
    _ binary: [UInt8], context: cl_context, device: cl_device_id, name: String, options: String
  ) throws -> OpenCLProgram {
    var err: cl_int = 0
    var status: cl_int = 0
    var dev: cl_device_id? = device
    var length = binary.count
    let created: cl_program? = binary.withUnsafeBufferPointer { bytes in
      var pointer: UnsafePointer<UInt8>? = bytes.baseAddress
      return clCreateProgramWithBinary(context, 1, &dev, &length, &pointer, &status, &err)
    }
    guard err == CL_SUCCESS, status == CL_SUCCESS, let program = created else {
      if let created { clReleaseProgram(created) }
      throw BackendError.openCL(call: "clCreateProgramWithBinary(\(name))", code: err)
    }
    return try finish(program, device: device, name: name, options: options)
  }

  /// The device binary of a built program (one device).
  static func binary(of program: cl_program) throws -> [UInt8] {
    var size = 0
    try check(
      clGetProgramInfo(
        program, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size, &size, nil),
      "clGetProgramInfo(CL_PROGRAM_BINARY_SIZES)")
    guard size > 0, size <= OpenCLProgramCache.maxBytes else {
      throw BackendError.openCL(call: "clGetProgramInfo(binary of \(size) bytes)", code: 0)
    }
    var bytes = [UInt8](repeating: 0, count: size)
    try bytes.withUnsafeMutableBufferPointer { buffer in
      var pointer: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
      try check(
        clGetProgramInfo(
          program, cl_program_info(CL_PROGRAM_BINARIES),
          MemoryLayout<UnsafeMutablePointer<UInt8>?>.size, &pointer, nil),
        "clGetProgramInfo(CL_PROGRAM_BINARIES)")
    }
    return bytes
  }

  /// Builds a created program (from source or binary) and creates all its kernels; the program
  /// is released on failure.
  private static func finish(
    _ program: cl_program, device: cl_device_id, name: String, options: String
  ) throws -> OpenCLProgram {
    var dev: cl_device_id? = device
    let code = clBuildProgram(program, 1, &dev, options, nil, nil)
    if code != CL_SUCCESS {
      let log = (try? buildLog(program, device)) ?? "(no build log)"
      clReleaseProgram(program)
      if code == CL_BUILD_PROGRAM_FAILURE || code == CL_INVALID_BUILD_OPTIONS
        || code == CL_COMPILER_NOT_AVAILABLE
      {
        throw BackendError.kernelBuildFailed(program: name, options: options, log: log)
      }
      throw BackendError.openCL(call: "clBuildProgram(\(name))", code: code)
    }

    var count: cl_uint = 0
    var kernels: [String: cl_kernel] = [:]
    var minWorkGroup = Int.max
    do {
      try check(clCreateKernelsInProgram(program, 0, nil, &count), "clCreateKernelsInProgram")
      var list = [cl_kernel?](repeating: nil, count: Int(count))
      try check(clCreateKernelsInProgram(program, count, &list, nil), "clCreateKernelsInProgram")
      for case let k? in list {
        let kname = try string {
          clGetKernelInfo(k, cl_kernel_info(CL_KERNEL_FUNCTION_NAME), $0, $1, $2)
        }
        kernels[kname] = k
        var wg = 0
        try check(
          clGetKernelWorkGroupInfo(
            k, device, cl_kernel_work_group_info(CL_KERNEL_WORK_GROUP_SIZE),
            MemoryLayout<Int>.size, &wg, nil), "clGetKernelWorkGroupInfo")
        minWorkGroup = min(minWorkGroup, wg)
      }
    } catch {
      for k in kernels.values { clReleaseKernel(k) }
      clReleaseProgram(program)
      throw error
    }
    return OpenCLProgram(
      program: program, kernels: kernels,
      maxWorkGroupSize: minWorkGroup == Int.max ? 0 : minWorkGroup)
  }

  static func buildLog(_ program: cl_program, _ device: cl_device_id) throws -> String {
    try OpenCLRuntime.string {
      clGetProgramBuildInfo(
        program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), $0, $1, $2)
    }
  }

  private static func string(
    _ query: (Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> cl_int
  ) throws -> String {
    try OpenCLRuntime.string(query)
  }
}
