import DiffEqNet
import NumericTestSupport
import XCTest

/// Every other backend against the CPU on the whole op catalog, in float32 with identical inputs:
/// forward outputs within ‖Δ‖/‖cpu‖ ≤ 1e-5, and vector-Jacobian products (same cotangent) within
/// ≤ 1e-4 for every input. Skipped when no such backend is present.
final class BackendConsistencyTests: XCTestCase {
  let forwardTolerance = 1e-5
  let gradientTolerance = 1e-4

  /// Every OpenCL device listed can be opened (its kernels compile).
  func testEveryOpenCLDeviceOpens() {
    XCTAssertEqual(openCLFailures, [])
  }

  func accelerators() throws -> [any Backend] {
    let list = acceleratorBackends()
    if list.isEmpty { throw missing(.opencl, "no OpenCL device") }
    return list
  }

  func testForwardMatchesCPU() throws {
    for backend in try accelerators() {
      for c in OpCases.all {
        let what = "\(c.name) on \(backend.name)"
        do {
          var rng = RandomState(seed: seed(c.name, salt: 4))
          let host = c.inputs(&rng)
          let expected = try c.op(host.map { try $0.tensor(.float32, on: sharedCPU) }).host
          let inputs = try host.map { try $0.tensor(.float32, on: backend) }
          try poisonPool(
            backend, .float32, counts: [expected.count] + host.map(\.count) + c.scratch)
          let out = try c.op(inputs)
          XCTAssertEqual(out.shape, expected.shape, what)
          let err = relativeError(try out.toDoubles(), expected.data)
          XCTAssertLessThanOrEqual(
            err, forwardTolerance, "\(what): ‖out − cpu‖/‖cpu‖ = \(err) exceeds \(forwardTolerance)"
          )
        } catch {
          XCTFail("\(what): threw \(error)")
        }
      }
    }
  }

  func testGradientsMatchCPU() throws {
    for backend in try accelerators() {
      for c in OpCases.all {
        let what = "\(c.name) on \(backend.name)"
        do {
          var rng = RandomState(seed: seed(c.name, salt: 5))
          let host = c.inputs(&rng)
          if c.differentiableInputs(host.count).isEmpty { continue }
          func grads(on b: any Backend, cotangent: HostTensor?) throws -> (HostTensor, [HostTensor])
          {
            let xs = try host.map { try $0.tensor(.float32, on: b) }
            let shape = try c.op(xs).shape
            var r = rng
            let ct = cotangent ?? r.normal(shape)
            let (_, g) = try vjp(at: xs, cotangent: try ct.tensor(.float32, on: b)) { try c.op($0) }
            return (ct, try g.map { try $0.host })
          }
          let (r, expected) = try grads(on: sharedCPU, cotangent: nil)
          let (_, actual) = try grads(on: backend, cotangent: r)
          for i in c.differentiableInputs(host.count) {
            XCTAssertEqual(actual[i].shape, expected[i].shape, "\(what): gradient \(i) shape")
            let err = relativeError(actual[i].data, expected[i].data)
            XCTAssertLessThanOrEqual(
              err, gradientTolerance,
              "\(what): gradient \(i) ‖Δ‖/‖cpu‖ = \(err) exceeds \(gradientTolerance)")
          }
        } catch {
          XCTFail("\(what): threw \(error)")
        }
      }
    }
  }

  /// `to(_:)` moves values between backends exactly.
  func testTransferBetweenBackendsIsExact() throws {
    for backend in try accelerators() {
      var rng = RandomState(seed: 31)
      for dtype in dtypes(on: backend) {
        let x = try rng.normal([7, 13]).tensor(dtype, on: sharedCPU)
        let there = try x.to(backend)
        XCTAssertTrue(there.backend === backend)
        XCTAssertEqual(try there.to(sharedCPU).toDoubles(), try x.toDoubles(), "\(dtype)")
      }
    }
  }
}
