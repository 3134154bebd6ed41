import ArgumentParser
import DiffEqNet

/// `runner devices`: what this machine can compute on.
struct Devices: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List OpenCL platforms and devices with their limits, and the CPU backend.")

  func run() throws {
    print("cpu      \(CPUBackend().name), float32 and float64")
    let devices = OpenCLBackend.devices()
    if devices.isEmpty {
      print("opencl   no OpenCL platform found (install pocl-opencl-icd or a GPU driver's ICD)")
    }
    for (i, d) in devices.enumerated() {
      print("opencl:\(i) \(d.summary)")
    }
  }
}
