// swift-tools-version:6.0
import PackageDescription

// The library's layers, bottom up; each target imports only targets below it, and
// `scripts/check-layers.sh` (run by the tests) fails when a source file imports one above.
//
//   Kernels          backends: the Backend protocol, CPUBackend, OpenCLBackend, BufferPool
//   DiffEqCore       Tensor, autodiff, Module, layers, optimisers, schedules, RandomState
//   DiffEqODE        solvers, adjoints, vector fields
//   DiffEqData       data sets, batches, safetensors checkpoints (beside DiffEqODE: neither
//                    imports the other)
//   DiffEqModels     the model zoo (ODE-Net, RK-Net, ResNet)
//   DiffEqTraining   the Trainer and its tasks, typed run settings
//   DiffEqNet        the product: re-exports all of the above
let package = Package(
  name: "DiffEqNet",
  products: [
    .library(name: "DiffEqNet", targets: ["DiffEqNet"]),
    .executable(name: "runner", targets: ["Runner"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
  ],
  targets: [
    .systemLibrary(
      name: "COpenCL", pkgConfig: "OpenCL",
      providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers"])]),
    .systemLibrary(
      name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
    // Repairs OpenBLAS's choice of kernels on CPUs newer than the library (see its header).
    .target(name: "COpenBLASCore", dependencies: ["CBLAS", "CSIMDSupport"]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    // AVX2 + FMA code behind a run-time check: Swift cannot target one function at them.
    .target(name: "CSIMDSupport"),
    .target(name: "CWinograd", dependencies: ["CSIMDSupport"]),
    .target(name: "CSmallGEMM", dependencies: ["CSIMDSupport"]),
    .target(name: "CVectorMath", dependencies: ["CSIMDSupport"]),
    .target(
      name: "Kernels",
      dependencies: [
        "COpenCL", "CBLAS", "COpenBLASCore", "CSIMDSupport", "CWinograd", "CSmallGEMM",
        "CVectorMath",
        .product(name: "Numerics", package: "swift-numerics"),
      ]),
    .target(name: "DiffEqCore", dependencies: ["Kernels"]),
    .target(name: "DiffEqODE", dependencies: ["DiffEqCore"]),
    .target(name: "DiffEqData", dependencies: ["DiffEqCore", "CZlib"]),
    .target(name: "DiffEqModels", dependencies: ["DiffEqODE"]),
    .target(name: "DiffEqTraining", dependencies: ["DiffEqModels", "DiffEqData"]),
    .target(
      name: "DiffEqNet",
      dependencies: [
        "Kernels", "DiffEqCore", "DiffEqODE", "DiffEqData", "DiffEqModels", "DiffEqTraining",
      ]),
    .executableTarget(
      name: "Runner",
      dependencies: [
        "DiffEqNet", .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),
    // What the numerical test targets share (a library target: test targets cannot import each
    // other).
    .target(name: "NumericTestSupport", path: "Tests/NumericTestSupport"),
    .testTarget(
      name: "KernelsTests",
      dependencies: ["Kernels", "CWinograd", "COpenBLASCore", "NumericTestSupport"]),
    .testTarget(name: "DiffEqNetTests", dependencies: ["DiffEqNet", "NumericTestSupport"]),
    .testTarget(name: "SolverTests", dependencies: ["DiffEqNet", "NumericTestSupport"]),
    .testTarget(name: "TrainingTests", dependencies: ["DiffEqNet", "NumericTestSupport"]),
    .testTarget(name: "DataTests", dependencies: ["DiffEqNet", "NumericTestSupport"]),
  ]
)
