import DiffEqNet
import XCTest

/// Buffer-pool accounting on every backend: a training step's tensors, graph and gradients all go
/// back to the pool when dropped, and repeating the step reuses cached buffers instead of growing.
final class PoolTests: XCTestCase {
  /// The forward checks rely on this: after `poisonPool`, the next allocation of that size holds
  /// NaN, so an output element an op does not write is visible.
  func testPoisoningReachesTheNextAllocation() throws {
    for backend in testBackends() {
      for dtype in dtypes(on: backend) {
        for n in [1, 7, 1000, 4099] {
          try poisonPool(backend, dtype, counts: [n])
          let buffer = try backend.allocate(n, dtype)
          var values = [Double](repeating: 0, count: n)
          if dtype == .float64 {
            try values.withUnsafeMutableBytes { try backend.read(buffer, into: $0) }
          } else {
            var f = [Float](repeating: 0, count: n)
            try f.withUnsafeMutableBytes { try backend.read(buffer, into: $0) }
            values = f.map(Double.init)
          }
          XCTAssertTrue(values.allSatisfy(\.isNaN), "\(backend.name) \(dtype) count \(n)")
        }
      }
    }
  }

  /// One step of conv2d → groupNorm → relu → globalAvgPool → linear → softmaxCrossEntropy,
  /// with or without the backward pass; returns the loss.
  @discardableResult
  func step(on backend: any Backend, backward: Bool) throws -> Double {
    var rng = RandomState(seed: 21)
    let params = try [
      rng.normal([4, 3, 13, 13]), rng.normal([8, 3, 3, 3], std: 0.3), rng.normal([8]),
      rng.normal([8], mean: 1, std: 0.1), rng.normal([8]), rng.normal([10, 8], std: 0.3),
      rng.normal([10]),
    ].map { try $0.tensor(.float32, on: backend) }
    let labels = try rng.labels(4, classes: 10).tensor(.float32, on: backend)
    let net: ([Tensor]) throws -> Tensor = { p in
      try p[0].conv2d(weight: p[1], bias: p[2], stride: 2, padding: 1)
        .groupNorm(groups: 4, gamma: p[3], beta: p[4]).relu().globalAvgPool()
        .linear(weight: p[5], bias: p[6]).softmaxCrossEntropy(labels: labels)
    }
    if backward {
      let (loss, grads) = try valueAndGrad(at: params, net)
      XCTAssertEqual(grads.map(\.shape), params.map(\.shape))
      for g in grads { XCTAssertTrue(try g.toDoubles().allSatisfy(\.isFinite)) }
      return try loss.item()
    }
    // Forward with a recorded graph that is never differentiated.
    return try net(params.map { $0.trackingGradients() }).item()
  }

  func testPoolReturnsToItsLevelAfterForwardAndBackward() throws {
    for backend in testBackends() {
      for backward in [true, false] {
        let what = "\(backend.name) backward: \(backward)"
        try backend.synchronize()
        let before = backend.pool.currentBytes
        backend.pool.resetPeak()
        let loss = try step(on: backend, backward: backward)
        XCTAssertTrue(loss.isFinite, what)
        try backend.synchronize()
        // The step's input alone is 4·3·13·13 floats: the accounting must have seen it.
        XCTAssertGreaterThan(backend.pool.peakBytes, before + 4 * 3 * 13 * 13 * 4, what)
        XCTAssertEqual(backend.pool.currentBytes, before, "\(what): bytes still held")
      }
    }
  }

  func testRepeatedStepsReuseCachedBuffers() throws {
    for backend in testBackends() {
      var totals: [Int] = []
      for _ in 0..<3 {
        try step(on: backend, backward: true)
        try backend.synchronize()
        totals.append(backend.pool.currentBytes + backend.pool.cachedBytes)
      }
      XCTAssertEqual(totals[1], totals[0], "\(backend.name): the second step allocated anew")
      XCTAssertEqual(totals[2], totals[1], "\(backend.name): the third step allocated anew")
    }
  }
}
