import ArgumentParser
import DiffEqNet

/// `runner bench …`: performance measurements (never assertions).
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Measure kernels and solvers; prints medians, device and problem size.",
    subcommands: [BenchKernels.self, BenchSolvers.self])
}

/// Options shared by the benchmarks.
struct BenchOptions: ParsableArguments {
  @Option(
    help: """
      Devices to measure: `all` (the CPU backend and every OpenCL device), or one of \
      auto, cpu, opencl, opencl:N.
      """)
  var device = "all"

  @Flag(help: "Print one JSON object per measurement instead of a table.")
  var json = false

  @Option(help: "Timed repetitions per measurement (the median is reported).")
  var repetitions = 7

  @Flag(
    help: """
      On an OpenCL device of CPU type, run GEMM with the OpenCL kernel instead of handing it to \
      OpenBLAS.
      """)
  var openclGemmKernel = false

  func validate() throws {
    guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
    if device != "all" { _ = try DeviceSpec(parsing: device) }
  }

  /// The backends selected by `--device`.
  func backends() throws -> [any Backend] {
    let options = try openCLOptions(blasOnCPUDevice: !openclGemmKernel)
    if device == "all" {
      return [CPUBackend()]
        + (try OpenCLBackend.devices().indices.map {
          try OpenCLBackend(deviceIndex: $0, options: options)
        })
    }
    return [try makeBackend(try DeviceSpec(parsing: device), openCL: options)]
  }
}

/// The measurement groups an `--only` value selects: every one of `all` for "all", else the
/// comma-separated names, each of which must be one of `all`.
func selectedGroups(_ only: String, of all: [String]) throws -> Set<String> {
  if only == "all" { return Set(all) }
  let names = Set(only.split(separator: ",").map(String.init))
  if let unknown = names.subtracting(all).sorted().first {
    throw ValidationError("unknown group '\(unknown)' in --only; choose from \(all)")
  }
  return names
}
