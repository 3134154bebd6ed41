import DiffEqNet
import Foundation
import NumericTestSupport
import XCTest

/// The mechanics of reverse mode, checked against derivatives worked out by hand on the host
/// (float64, CPU): vjp over inputs and parameters at once, accumulation over repeated uses, zero
/// gradients for unused leaves, and recording only what is tracked.
final class AutodiffTests: XCTestCase {
  let cpu = sharedCPU

  func t(_ h: HostTensor) throws -> Tensor { try h.tensor(.float64, on: cpu) }

  /// y = tanh(x·Wᵀ + b): dx = (r ⊙ (1 − y²))·W, dW = (r ⊙ (1 − y²))ᵀ·x, db = Σ_rows r ⊙ (1 − y²).
  func testVJPGivesCotangentTimesJacobianForInputsAndParametersAtOnce() throws {
    var rng = RandomState(seed: 11)
    let (x, w, b) = (rng.normal([7, 13]), rng.normal([5, 13], std: 0.3), rng.normal([5]))
    let r = rng.normal([7, 5])
    let (value, grads) = try vjp(at: [t(x), t(w), t(b)], cotangent: t(r)) {
      try $0[0].linear(weight: $0[1], bias: $0[2]).tanh()
    }
    let y = Ref.map(Ref.linear(x, w, b), Foundation.tanh)
    let dz = HostTensor(y.shape, zip(r.data, y.data).map { $0 * (1 - $1 * $1) })
    let dx = Ref.matmul(dz, w)
    let dw = Ref.matmul(dz, x, transA: true)
    let db = Ref.reduce(dz, axes: [0], keepDims: false, mean: false)
    XCTAssertLessThanOrEqual(relativeError(try value.toDoubles(), y.data), 1e-12, "value")
    XCTAssertEqual(grads.map(\.shape), [[7, 13], [5, 13], [5]])
    XCTAssertLessThanOrEqual(relativeError(try grads[0].toDoubles(), dx.data), 1e-12, "d/dx")
    XCTAssertLessThanOrEqual(relativeError(try grads[1].toDoubles(), dw.data), 1e-12, "d/dW")
    XCTAssertLessThanOrEqual(relativeError(try grads[2].toDoubles(), db.data), 1e-12, "d/db")
  }

  /// A pullback applied to several cotangents gives each one's vjp, on a graph that uses an
  /// intermediate twice (its accumulated cotangent must not leak from one call into the next).
  func testPullbackAppliesToManyCotangents() throws {
    var rng = RandomState(seed: 12)
    let (x, w) = (rng.normal([4, 6]), rng.normal([6, 6], std: 0.4))
    let f = { (x: Tensor) throws -> Tensor in
      let h = try x.matmul(self.t(w), transposeOther: true).tanh()
      return try h * h + h.matmul(self.t(w))
    }
    let (value, pull) = try pullback(at: t(x), f)
    XCTAssertLessThanOrEqual(
      relativeError(try value.toDoubles(), try f(t(x)).toDoubles()), 1e-15, "value")
    for seed in 0..<3 {
      var r = RandomState(seed: 100 + UInt64(seed))
      let u = try t(r.normal([4, 6]))
      let (_, expected) = try vjp(at: [t(x)], cotangent: u) { try f($0[0]) }
      XCTAssertLessThanOrEqual(
        relativeError(try pull(u).toDoubles(), try expected[0].toDoubles()), 1e-14,
        "cotangent \(seed)")
    }
  }

  /// A two-layer model: the module form of vjp differentiates inputs and trainable parameters in
  /// one pass. h = tanh(x·W1ᵀ + b1), y = h·W2ᵀ + b2; with dz = (r·W2) ⊙ (1 − h²):
  /// dx = dz·W1, dW1 = dzᵀ·x, db1 = Σ dz, dW2 = rᵀ·h, db2 = Σ r.
  func testModuleVJPGivesInputAndParameterGradientsAndRestoresParameters() throws {
    final class TwoLayer: Module {
      let l1: Linear
      let l2: Linear
      init(rng: inout RandomState, on backend: any Backend) throws {
        l1 = try Linear(13, 7, dtype: .float64, rng: &rng, on: backend)
        l2 = try Linear(7, 5, dtype: .float64, rng: &rng, on: backend)
        super.init()
      }
    }
    var rng = RandomState(seed: 17)
    let model = try TwoLayer(rng: &rng, on: cpu)
    let (x, r) = (rng.normal([4, 13]), rng.normal([4, 5]))
    let (w1, b1) = (try model.l1.weight.value.host, try model.l1.bias!.value.host)
    let (w2, b2) = (try model.l2.weight.value.host, try model.l2.bias!.value.host)
    let (value, gx, gp) = try vjp(model, at: [t(x)], cotangent: t(r)) {
      try model.l2(model.l1($0[0]).tanh())
    }
    let h = Ref.map(Ref.linear(x, w1, b1), Foundation.tanh)
    let dh = Ref.matmul(r, w2)
    let dz = HostTensor(h.shape, zip(dh.data, h.data).map { $0 * (1 - $1 * $1) })
    let expected: [String: HostTensor] = [
      "l1.weight": Ref.matmul(dz, x, transA: true),
      "l1.bias": Ref.reduce(dz, axes: [0], keepDims: false, mean: false),
      "l2.weight": Ref.matmul(r, h, transA: true),
      "l2.bias": Ref.reduce(r, axes: [0], keepDims: false, mean: false),
    ]
    XCTAssertLessThanOrEqual(
      relativeError(try value.toDoubles(), Ref.linear(h, w2, b2).data), 1e-12, "value")
    XCTAssertLessThanOrEqual(
      relativeError(try gx[0].toDoubles(), Ref.matmul(dz, w1).data), 1e-12, "d/dx")
    // In trainableParameters() order.
    let names = model.trainableParameters().map(\.name)
    XCTAssertEqual(names, ["l1.weight", "l1.bias", "l2.weight", "l2.bias"])
    XCTAssertEqual(gp.count, names.count)
    for (name, g) in zip(names, gp) {
      let e = expected[name]!
      XCTAssertEqual(g.shape, e.shape, name)
      XCTAssertLessThanOrEqual(relativeError(try g.toDoubles(), e.data), 1e-12, name)
    }
    XCTAssertFalse(model.l1.weight.value.isTracked, "parameters are restored untracked")
    XCTAssertEqual(try model.l1.weight.value.host.data, w1.data, "parameter values unchanged")
  }

  /// Several outputs: Σ_k rₖᵀ·∂fₖ/∂x, including one output listed twice (its seeds add) and nil
  /// cotangents meaning ones.
  func testMultiOutputVJPSumsOverOutputs() throws {
    var rng = RandomState(seed: 18)
    let (x, r1, r2) = (rng.normal([13]), rng.normal([13]), rng.normal([13]))
    let th = x.data.map { Foundation.tanh($0) }
    let (ys, g, _) = try vjp(nil, at: [t(x)], cotangents: [t(r1), t(r2)]) {
      [try $0[0].tanh(), try $0[0] * $0[0]]
    }
    XCTAssertEqual(ys.count, 2)
    let e1 = (0..<13).map { i -> Double in
      let dTanh: Double = r1.data[i] * (1 - th[i] * th[i])
      return dTanh + 2 * x.data[i] * r2.data[i]
    }
    XCTAssertLessThanOrEqual(relativeError(try g[0].toDoubles(), e1), 1e-14, "two outputs")
    let (_, g2, _) = try vjp(nil, at: [t(x)], cotangents: [t(r1), t(r2)]) { xs in
      let y = try xs[0].tanh()
      return [y, y]
    }
    let e2 = (0..<13).map { i -> Double in (r1.data[i] + r2.data[i]) * (1 - th[i] * th[i]) }
    XCTAssertLessThanOrEqual(relativeError(try g2[0].toDoubles(), e2), 1e-14, "one output twice")
    let (_, g3, _) = try vjp(nil, at: [t(x)], cotangents: nil) { [try $0[0].tanh()] }
    let e3 = th.map { 1 - $0 * $0 }
    XCTAssertLessThanOrEqual(relativeError(try g3[0].toDoubles(), e3), 1e-14, "nil cotangents")
    let e = expectTensorError("one cotangent for two outputs") {
      _ = try vjp(nil, at: [self.t(x)], cotangents: [self.t(r1)]) { [try $0[0].tanh(), $0[0]] }
    }
    XCTAssertEqual(e?.kind, "invalidArgument")
    XCTAssertEqual(e?.op, "vjp")
  }

  /// valueAndGrad is vjp with cotangent 1: ∇ mean(x²) = 2x/n.
  func testValueAndGradOfAScalar() throws {
    var rng = RandomState(seed: 12)
    let x = rng.normal([13, 7])
    let (value, grads) = try valueAndGrad(at: [t(x)]) { try $0[0].square().mean() }
    XCTAssertEqual(
      try value.item(), x.data.reduce(0) { $0 + $1 * $1 } / 91, accuracy: 1e-13, "value")
    let expected = x.data.map { 2 * $0 / 91 }
    XCTAssertLessThanOrEqual(relativeError(try grads[0].toDoubles(), expected), 1e-13)
  }

  func testTensorUsedTwiceAccumulatesItsGradients() throws {
    var rng = RandomState(seed: 13)
    let x = rng.normal([31])
    let r = rng.normal([31])
    // A leaf used twice in one op and again in another: d(x·x + x) = r ⊙ (2x + 1).
    let (_, g1) = try vjp(at: [t(x)], cotangent: t(r)) { try $0[0] * $0[0] + $0[0] }
    let e1 = zip(x.data, r.data).map { $1 * (2 * $0 + 1) }
    XCTAssertLessThanOrEqual(relativeError(try g1[0].toDoubles(), e1), 1e-14, "leaf used 3 times")
    // An interior node used twice: y = tanh(x), z = y·y + y: r ⊙ (2y + 1)(1 − y²).
    let (_, g2) = try vjp(at: [t(x)], cotangent: t(r)) {
      let y = try $0[0].tanh()
      return try y * y + y
    }
    let e2 = zip(x.data, r.data).map { xi, ri -> Double in
      let y = Foundation.tanh(xi)
      return ri * (2 * y + 1) * (1 - y * y)
    }
    XCTAssertLessThanOrEqual(relativeError(try g2[0].toDoubles(), e2), 1e-14, "interior node")
    // A parameter shared by two branches of different shapes: Σ (x + a) + Σ (a·x) for x [4, 31],
    // a [31]: d/da = Σ_rows r1 + Σ_rows r2 ⊙ x.
    let xm = rng.normal([4, 31])
    let a = rng.normal([31])
    let rc = rng.normal([8, 31])
    let (_, g3) = try vjp(at: [t(xm), t(a)], cotangent: t(rc)) {
      try Tensor.concat([$0[0] + $0[1], $0[1] * $0[0]], axis: 0)
    }
    var da = [Double](repeating: 0, count: 31)
    for i in 0..<4 {
      for j in 0..<31 { da[j] += rc[[i, j]] + rc[[4 + i, j]] * xm[[i, j]] }
    }
    XCTAssertLessThanOrEqual(relativeError(try g3[1].toDoubles(), da), 1e-14, "shared parameter")
  }

  func testLeafTheOutputDoesNotDependOnGetsZeros() throws {
    var rng = RandomState(seed: 14)
    let (x, unused) = (rng.normal([7]), rng.normal([3, 5]))
    try poisonPool(cpu, .float64, counts: [15])
    let (_, grads) = try vjp(at: [t(x), t(unused)], cotangent: t(rng.normal([7]))) {
      try $0[0].tanh()
    }
    XCTAssertEqual(grads[1].shape, [3, 5])
    XCTAssertEqual(try grads[1].toDoubles(), [Double](repeating: 0, count: 15))
    // An output that depends on no input at all: every gradient is zero.
    let (_, none) = try valueAndGrad(at: [t(x)]) { _ in
      try Tensor.ones([1], dtype: .float64, on: cpu)
    }
    XCTAssertEqual(try none[0].toDoubles(), [Double](repeating: 0, count: 7))
  }

  func testIdentityReturnsTheCotangent() throws {
    var rng = RandomState(seed: 15)
    let (x, r) = (rng.normal([2, 3]), rng.normal([2, 3]))
    let (value, grads) = try vjp(at: [t(x)], cotangent: t(r)) { $0[0] }
    XCTAssertEqual(try value.toDoubles(), x.data)
    XCTAssertEqual(try grads[0].toDoubles(), r.data)
  }

  func testOnlyTrackedComputationsAreRecorded() throws {
    var rng = RandomState(seed: 16)
    let a = try t(rng.normal([4, 4]))
    let b = try t(rng.normal([4, 4]))
    XCTAssertFalse(a.isTracked, "a fresh tensor")
    XCTAssertFalse(try (a * b).tanh().sum().isTracked, "ops on untracked inputs record nothing")
    let ta = a.trackingGradients()
    XCTAssertTrue(ta.isTracked, "a new leaf")
    XCTAssertTrue(try (ta * b).isTracked, "an op with one tracked input")
    XCTAssertTrue(try ta.reshaped([16]).isTracked, "views are recorded too")
    XCTAssertFalse(try (ta * b).detached.isTracked, "detached")
    var seen: [Bool] = []
    let (value, grads) = try vjp(at: [a, b], cotangent: t(rng.normal([4, 4]))) { xs in
      seen = xs.map(\.isTracked)
      return try xs[0].matmul(xs[1])
    }
    XCTAssertEqual(seen, [true, true], "vjp tracks its inputs")
    XCTAssertFalse(value.isTracked, "vjp's value is detached")
    XCTAssertFalse(grads.contains(where: \.isTracked), "backward rules record nothing")
    XCTAssertFalse(a.isTracked, "vjp leaves the caller's tensors untracked")
  }

  func testVJPRejectsBadCotangentsAndValueAndGradNonScalars() throws {
    let x = try Tensor.ones([3], dtype: .float64, on: cpu)
    let shape = expectTensorError("cotangent of the wrong shape") {
      _ = try vjp(at: [x], cotangent: Tensor.ones([4], dtype: .float64, on: self.cpu)) {
        try $0[0].tanh()
      }
    }
    XCTAssertEqual(shape, .shapeMismatch(op: "backward seed", lhs: [3], rhs: [4]))
    let type = expectTensorError("cotangent of the wrong type") {
      _ = try vjp(at: [x], cotangent: Tensor.ones([3], dtype: .float32, on: self.cpu)) {
        try $0[0].tanh()
      }
    }
    XCTAssertEqual(type?.kind, "dtypeMismatch")
    let device = expectTensorError("cotangent on another backend") {
      _ = try vjp(at: [x], cotangent: Tensor.ones([3], dtype: .float64, on: CPUBackend())) {
        try $0[0].tanh()
      }
    }
    XCTAssertEqual(device?.kind, "deviceMismatch")
    let vector = expectTensorError("valueAndGrad of a vector") {
      _ = try valueAndGrad(at: [x]) { try $0[0].tanh() }
    }
    XCTAssertEqual(vector?.kind, "invalidShape")
    XCTAssertEqual(vector?.op, "valueAndGrad")
  }

  /// Graphs of long ODE solves are deeper than the call stack: a 50 000-op chain must
  /// differentiate and be freed without recursion (a recursive release overflowed the stack from
  /// about 30 000 nodes). d/dx of (0.9999·)ⁿ x is 0.9999ⁿ.
  func testDeepChainDifferentiatesAndFrees() throws {
    let depth = 50_000
    let x = try Tensor([0.5], shape: [1], dtype: .float64, on: cpu)
    let (value, grads) = try valueAndGrad(at: [x]) { xs in
      var y = xs[0]
      for _ in 0..<depth { y = try y * 0.9999 }
      return y
    }
    let factor = Foundation.pow(0.9999, Double(depth))
    XCTAssertEqual(try value.item(), 0.5 * factor, accuracy: 1e-12)
    XCTAssertEqual(try grads[0].item(), factor, accuracy: 1e-12)
  }
}
