import ArgumentParser
import DiffEqNet
import Foundation

/// The OpenCL backend options a `runner` command asks for: `blasOnCPUDevice` from its flags, and
/// two tuning settings from the environment, for trying configurations without a rebuild:
/// `DIFFEQNET_OPENCL_REDUCTION_WG=<power of two>` (reductions, group norm, softmax) and
/// `DIFFEQNET_OPENCL_GEMM_TILE=<TS>,<WPT>,<TSK>` (GEMM tiling, TS a multiple of WPT).
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
  do { try options.validate() } catch { throw ValidationError("\(error)") }
  return options
}
