import ArgumentParser
import DiffEqNet
import Foundation

/// The OpenCL backend options a `runner` command asks for: `blasOnCPUDevice` from its flags, and
/// two tuning settings from the environment, for trying configurations without a rebuild:
/// `DIFFEQNET_OPENCL_REDUCTION_WG=<power of two>` (reductions, group norm, softmax) and
/// `DIFFEQNET_OPENCL_GEMM_TILE=<TS>,<WPT>,<TSK>` (GEMM tiling, TS a multiple of WPT, over any
/// tuning). Compiled programs are kept in `DIFFEQNET_OPENCL_CACHE` (a folder, or `off`), by
/// default `$XDG_CACHE_HOME/diffeqnet/opencl` or `~/.cache/diffeqnet/opencl`; `runner tune`'s
/// records in `DIFFEQNET_OPENCL_TUNING` (likewise), by default `…/diffeqnet/tuning`.
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
  options.programCache = cacheFolder("DIFFEQNET_OPENCL_CACHE", "opencl", environment).map {
    OpenCLProgramCache(directory: $0)
  }
  options.tuning = cacheFolder("DIFFEQNET_OPENCL_TUNING", "tuning", environment).map {
    OpenCLTuningStore(directory: $0)
  }
  do { try options.validate() } catch { throw ValidationError("\(error)") }
  return options
}

/// The folder named by the environment variable `variable` (nil when it is `off` or empty), else
/// `diffeqnet/<name>` under `$XDG_CACHE_HOME` or `~/.cache`; nil when there is no home folder.
func cacheFolder(_ variable: String, _ name: String, _ environment: [String: String]) -> URL? {
  if let text = environment[variable] {
    return text == "off" || text.isEmpty ? nil : URL(fileURLWithPath: text, isDirectory: true)
  }
  let base =
    environment["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0, isDirectory: true) }
    ?? environment["HOME"].map {
      URL(fileURLWithPath: $0, isDirectory: true).appendingPathComponent(".cache")
    }
  return base?.appendingPathComponent("diffeqnet/\(name)", isDirectory: true)
}
