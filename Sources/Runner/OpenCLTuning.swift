import ArgumentParser
import DiffEqNet
import Foundation

/// The OpenCL backend options a `runner` command asks for: `blasOnCPUDevice` from its flags, and
/// two tuning settings from the environment, for trying configurations without a rebuild:
/// `DIFFEQNET_OPENCL_REDUCTION_WG=<power of two>` (reductions, group norm, softmax) and
/// `DIFFEQNET_OPENCL_GEMM_TILE=<TS>,<WPT>,<TSK>` (GEMM tiling, TS a multiple of WPT). Compiled
/// programs are kept in `DIFFEQNET_OPENCL_CACHE` (a folder, or `off`), by default
/// `$XDG_CACHE_HOME/diffeqnet/opencl` or `~/.cache/diffeqnet/opencl`.
func openCLOptions(
  blasOnCPUDevice: Bool = true,
  environment: [String: String] = ProcessInfo.processInfo.environment
) throws -> OpenCLBackend.Options {
  var options = OpenCLBackend.Options(blasOnCPUDevice: blasOnCPUDevice)
  if let text = environment["DIFFEQNET_OPENCL_REDUCTION_WG"] {
    guard let wg = Int(text) else {
      throw ValidationError("DIFFEQNET_OPENCL_REDUCTION_WG='\(text)' is not an integer")
    }
    options.reductionWorkGroupSize = wg
  }
  if let text = environment["DIFFEQNET_OPENCL_GEMM_TILE"] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
    guard parts.count == 3, let ts = parts[0], let wpt = parts[1], let tsk = parts[2] else {
      throw ValidationError("DIFFEQNET_OPENCL_GEMM_TILE='\(text)' is not TS,WPT,TSK")
    }
    options.gemmTiling = .init(ts: ts, wpt: wpt, tsk: tsk)
  }
  options.programCache = programCache(environment)
  do { try options.validate() } catch { throw ValidationError("\(error)") }
  return options
}

/// Where compiled OpenCL programs are kept (see `openCLOptions`); nil when turned off or when
/// there is no home folder to put them in.
func programCache(_ environment: [String: String]) -> OpenCLProgramCache? {
  if let text = environment["DIFFEQNET_OPENCL_CACHE"] {
    return text == "off" || text.isEmpty
      ? nil : OpenCLProgramCache(directory: URL(fileURLWithPath: text, isDirectory: true))
  }
  let base =
    environment["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0, isDirectory: true) }
    ?? environment["HOME"].map {
      URL(fileURLWithPath: $0, isDirectory: true).appendingPathComponent(".cache")
    }
  return base.map {
    OpenCLProgramCache(directory: $0.appendingPathComponent("diffeqnet/opencl", isDirectory: true))
  }
}
