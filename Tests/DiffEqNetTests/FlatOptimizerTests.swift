import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// Optimisers through flat parameter storage against the per-parameter path: the arithmetic per
/// element is the same, so parameters and state must agree exactly, on every backend, through
/// replaced parameter values, missing gradients and restored state.
final class FlatOptimizerTests: XCTestCase {
  /// A module of 19 parameters of odd sizes: more than one `pack` launch on OpenCL, and ranges
  /// that need padding to the view alignment.
  final class ParameterBag: Module {
    let tensors: [Parameter]
    static let shapes = (0..<19).map { k in k % 3 == 0 ? [k + 1] : [k % 5 + 1, 2 * k + 3] }

    init(seed: UInt64, dtype: DType, on backend: any Backend) throws {
      var rng = RandomState(seed: seed)
      tensors = try Self.shapes.map {
        Parameter(try .normal($0, dtype: dtype, rng: &rng, on: backend))
      }
      super.init()
    }
  }

  /// Each optimiser with settings that use every term of its update.
  static let optimizers: [(String, @Sendable () -> any Optimizer)] = [
    ("sgd", { SGD(learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-2) }),
    ("adam", { Adam(learningRate: 1e-2, weightDecay: 1e-3) }),
    ("adamw", { Adam.adamW(learningRate: 1e-2) }),
    ("rmsprop", { RMSprop(learningRate: 1e-2) }),
  ]

  private func gradients(
    _ model: Module, step: Int, dtype: DType, on backend: any Backend, skipping: Set<String> = []
  ) throws -> [String: Tensor] {
    var rng = RandomState(seed: 1000 + UInt64(step))
    var out: [String: Tensor] = [:]
    for (name, p) in model.trainableParameters() {
      let g = try Tensor.normal(p.value.shape, dtype: dtype, rng: &rng, on: backend)
      if !skipping.contains(name) { out[name] = g }
    }
    return out
  }

  private func values(_ model: Module) throws -> [[Double]] {
    try model.trainableParameters().map { try $0.parameter.value.toDoubles() }
  }

  private func state(_ optimizer: any Optimizer) throws -> [String: [Double]] {
    try optimizer.stateTensors().mapValues { try $0.toDoubles() }
  }

  private func pair(_ make: () -> any Optimizer) -> (flat: any Optimizer, each: any Optimizer) {
    let flat = make()
    let each = make()
    (each as! StatefulOptimizer).flattensParameters = false
    return (flat, each)
  }

  func testFlatUpdatesEqualPerParameterUpdates() throws {
    for backend in testBackends() {
      for dtype in dtypes(on: backend) {
        for (label, make) in Self.optimizers {
          let context = "\(label) \(dtype) on \(backend.name)"
          let (flat, each) = pair(make)
          let a = try ParameterBag(seed: 7, dtype: dtype, on: backend)
          let b = try ParameterBag(seed: 7, dtype: dtype, on: backend)
          for step in 0..<4 {
            if step == 2 {
              flat.learningRate *= 0.5
              each.learningRate *= 0.5
            }
            try flat.update(a, gradients: gradients(a, step: step, dtype: dtype, on: backend))
            try each.update(b, gradients: gradients(b, step: step, dtype: dtype, on: backend))
          }
          XCTAssertEqual(try values(a), try values(b), context)
          XCTAssertEqual(try state(flat), try state(each), context)
          // The update moved: a test of equality between two paths that did nothing proves nothing.
          let start = try values(ParameterBag(seed: 7, dtype: dtype, on: backend))
          XCTAssertNotEqual(try values(a), start, context)
        }
      }
    }
  }

  /// A replaced parameter value (what a checkpoint load does), a step in which one parameter has
  /// no gradient, and state restored into a fresh optimiser all continue as the per-parameter
  /// path does.
  func testReplacedValuesMissingGradientsAndRestoredStateStayExact() throws {
    for backend in testBackends() {
      let dtype = DType.float32
      let context = backend.name
      let (flat, each) = pair({ Adam(learningRate: 1e-2) })
      let a = try ParameterBag(seed: 3, dtype: dtype, on: backend)
      let b = try ParameterBag(seed: 3, dtype: dtype, on: backend)
      try flat.update(a, gradients: gradients(a, step: 0, dtype: dtype, on: backend))
      try each.update(b, gradients: gradients(b, step: 0, dtype: dtype, on: backend))

      // A checkpoint load sets new tensors as the values; the flat path copies them into its
      // storage and updates there, leaving the loaded tensor as it was.
      var rng = RandomState(seed: 99)
      let loaded = try Tensor.normal(ParameterBag.shapes[4], dtype: dtype, rng: &rng, on: backend)
      let loadedValues = try loaded.toDoubles()
      a.tensors[4].value = loaded
      b.tensors[4].value = try Tensor(loadedValues, shape: loaded.shape, dtype: dtype, on: backend)
      let skipped: Set = ["tensors.5"]
      try flat.update(
        a, gradients: gradients(a, step: 1, dtype: dtype, on: backend, skipping: skipped))
      try each.update(
        b, gradients: gradients(b, step: 1, dtype: dtype, on: backend, skipping: skipped))
      XCTAssertEqual(try values(a), try values(b), context)
      XCTAssertNotNil(a.tensors[4].value.buffer.viewedBuffer, context)
      XCTAssertEqual(try loaded.toDoubles(), loadedValues, context)

      let restored = Adam(learningRate: 1e-2)
      try restored.loadState(flat.stateTensors(), step: flat.step)
      for step in 2..<4 {
        try restored.update(a, gradients: gradients(a, step: step, dtype: dtype, on: backend))
        try each.update(b, gradients: gradients(b, step: step, dtype: dtype, on: backend))
      }
      XCTAssertEqual(try values(a), try values(b), context)
      XCTAssertEqual(try state(restored), try state(each), context)
    }
  }

  /// On OpenCL the flat update is one `pack` launch per 16 gradients and one update launch, where
  /// the per-parameter path takes one launch per parameter.
  func testFlatUpdateLaunchesOncePerSixteenParametersPlusOne() throws {
    for backend in acceleratorBackends() {
      let model = try ParameterBag(seed: 1, dtype: .float32, on: backend)
      let (flat, each) = pair({ SGD(learningRate: 0.1, momentum: 0.9) })
      let other = try ParameterBag(seed: 1, dtype: .float32, on: backend)
      // The first update lays the storage out (or creates the state); count a later one.
      try flat.update(model, gradients: gradients(model, step: 0, dtype: .float32, on: backend))
      try each.update(other, gradients: gradients(other, step: 0, dtype: .float32, on: backend))
      let g = try gradients(model, step: 1, dtype: .float32, on: backend)
      var before = backend.traffic.launches
      try flat.update(model, gradients: g)
      let n = ParameterBag.shapes.count
      XCTAssertEqual(backend.traffic.launches - before, (n + 15) / 16 + 1, backend.name)
      let h = try gradients(other, step: 1, dtype: .float32, on: backend)
      before = backend.traffic.launches
      try each.update(other, gradients: h)
      XCTAssertEqual(backend.traffic.launches - before, n, backend.name)
    }
  }
}
