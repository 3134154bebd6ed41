// swift-tools-version:6.0
import Foundation
import PackageDescription

// Uses DiffEqNet from outside, as any other package would: by version, from a git URL. The URL is
// `DIFFEQNET_URL` when set (scripts/build-example.sh points it at a tagged copy of this checkout,
// which is what proves SwiftPM accepts DiffEqNet as a versioned dependency), else the checkout
// this example sits in, by path.
let diffEqNet: Package.Dependency =
  ProcessInfo.processInfo.environment["DIFFEQNET_URL"].map { .package(url: $0, from: "0.1.0") }
  ?? .package(name: "DiffEqNet", path: "../..")

let package = Package(
  name: "NeuralODEFit",
  dependencies: [diffEqNet],
  targets: [
    .executableTarget(
      name: "NeuralODEFit", dependencies: [.product(name: "DiffEqNet", package: "DiffEqNet")])
  ]
)
