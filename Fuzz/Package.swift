// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for DiffEqNet's readers of untrusted bytes. Build and run them with
// scripts/fuzz.sh, which instruments every Swift module for coverage and AddressSanitizer and links
// libFuzzer's driver (each target's main hands its test function to `LLVMFuzzerRunDriver`).
let package = Package(
  name: "DiffEqNetFuzz",
  dependencies: [.package(name: "DiffEqNet", path: "..")],
  targets: [
    .target(name: "CFuzzerDriver"),
    .target(
      name: "FuzzSupport",
      dependencies: ["CFuzzerDriver", .product(name: "DiffEqNet", package: "DiffEqNet")]),
    .executableTarget(name: "FuzzSafeTensors", dependencies: ["FuzzSupport"]),
    .executableTarget(name: "FuzzIDX", dependencies: ["FuzzSupport"]),
    .executableTarget(name: "FuzzCIFAR", dependencies: ["FuzzSupport"]),
    .executableTarget(name: "FuzzSettings", dependencies: ["FuzzSupport"]),
    .executableTarget(name: "FuzzSeriesCSV", dependencies: ["FuzzSupport"]),
    .executableTarget(name: "FuzzTableCSV", dependencies: ["FuzzSupport"]),
  ]
)
