// swift-tools-version:6.0
import PackageDescription

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
    .target(
      name: "CWinograd", dependencies: ["CSIMDSupport"],
      cSettings: [.unsafeFlags(["-O3"], .when(configuration: .release))]),
    .target(
      name: "CSmallGEMM", dependencies: ["CSIMDSupport"],
      cSettings: [.unsafeFlags(["-O3"], .when(configuration: .release))]),
    .target(
      name: "CVectorMath", dependencies: ["CSIMDSupport"],
      cSettings: [.unsafeFlags(["-O3"], .when(configuration: .release))]),
    .target(
      name: "Kernels",
      dependencies: [
        "COpenCL", "CBLAS", "COpenBLASCore", "CSIMDSupport", "CWinograd", "CSmallGEMM",
        "CVectorMath",
        .product(name: "Numerics", package: "swift-numerics"),
      ],
      swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),
    .target(name: "DiffEqNet", dependencies: ["Kernels", "CZlib"]),
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
    .testTarget(name: "TrainingTests", dependencies: ["DiffEqNet"]),
    .testTarget(name: "DataTests", dependencies: ["DiffEqNet"]),
  ]
)
