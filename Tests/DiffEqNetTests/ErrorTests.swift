import DiffEqNet
import XCTest

/// Invalid uses throw typed errors naming the op instead of computing garbage or trapping.
final class ErrorTests: XCTestCase {
  let cpu = sharedCPU

  func z(_ shape: [Int], _ dtype: DType = .float32, on backend: (any Backend)? = nil) throws
    -> Tensor
  {
    try Tensor.zeros(shape, dtype: dtype, on: backend ?? cpu)
  }

  func assertShapeMismatch(
    _ op: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
  ) {
    let e = expectTensorError("shape mismatch in \(op)", file: file, line: line, body)
    XCTAssertEqual(
      e?.kind, "shapeMismatch", "\(op): \(String(describing: e))", file: file, line: line)
    XCTAssertEqual(e?.op, op, file: file, line: line)
  }

  func assertInvalid(
    _ op: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
  ) {
    let e = expectTensorError("invalid use of \(op)", file: file, line: line, body)
    XCTAssertTrue(
      ["invalidArgument", "invalidShape"].contains(e?.kind ?? ""),
      "\(op): \(String(describing: e))", file: file, line: line)
    XCTAssertEqual(e?.op, op, file: file, line: line)
  }

  func testShapeMismatchesNameTheOp() throws {
    let (a, b) = (try z([2, 3]), try z([4]))
    assertShapeMismatch("add") { _ = try a + b }
    assertShapeMismatch("sub") { _ = try a - b }
    assertShapeMismatch("mul") { _ = try a * b }
    assertShapeMismatch("div") { _ = try a / b }
    assertShapeMismatch("maximum") { _ = try a.maximum(b) }
    assertShapeMismatch("add") { _ = try self.z([2, 3, 4, 5]) + self.z([4, 1, 1]) }
    assertShapeMismatch("matmul") { _ = try a.matmul(self.z([4, 5])) }
    assertShapeMismatch("matmul") { _ = try a.matmul(self.z([3])) }
    assertShapeMismatch("matmul") { _ = try a.matmul(self.z([3, 2]), transposeOther: true) }
    assertShapeMismatch("matmul") { _ = try self.z([2, 3, 4]).matmul(self.z([3, 4, 5])) }
    assertShapeMismatch("linear") { _ = try a.linear(weight: self.z([4, 5]), bias: nil) }
    assertShapeMismatch("linear bias") {
      _ = try a.linear(weight: self.z([4, 3]), bias: self.z([5]))
    }
    let x = try z([1, 3, 5, 5])
    assertShapeMismatch("conv2d") { _ = try x.conv2d(weight: self.z([2, 4, 3, 3])) }
    assertShapeMismatch("conv2d") { _ = try x.conv2d(weight: self.z([2, 3, 3])) }
    assertShapeMismatch("conv2d bias") {
      _ = try x.conv2d(weight: self.z([2, 3, 3, 3]), bias: self.z([3]))
    }
    assertShapeMismatch("concat") { _ = try Tensor.concat([a, self.z([3, 3])], axis: 1) }
    assertShapeMismatch("concat") { _ = try Tensor.concat([a, self.z([2, 3, 1])], axis: 1) }
    assertShapeMismatch("reshape") { _ = try a.reshaped([4]) }
    assertShapeMismatch("reshape") { _ = try a.reshaped([-1, 4]) }
    assertShapeMismatch("mse") { _ = try a.mse(self.z([3, 2])) }
    assertShapeMismatch("softmaxCrossEntropy") {
      _ = try a.softmaxCrossEntropy(labels: self.z([3]))
    }
    assertShapeMismatch("batchNorm") { _ = try x.batchNorm(gamma: self.z([4]), beta: self.z([3])) }
    assertShapeMismatch("groupNorm affine") {
      _ = try x.groupNorm(groups: 3, gamma: self.z([3]), beta: self.z([1]))
    }
    assertShapeMismatch("sum(to:)") { _ = try a.sum(to: [4]) }
    assertShapeMismatch("linearCombination") { _ = try Tensor.linearCombination([a, b], [1, 2]) }
    assertShapeMismatch("error norm") {
      _ = try Tensor.scaledErrorSquaredSum(error: a, y0: a, y1: b, atol: 1, rtol: 1)
    }
    assertShapeMismatch("sum(to:)") { _ = try a.sum(to: [1, 2, 3]) }
  }

  func testInvalidArgumentsNameTheOp() throws {
    let a = try z([2, 3])
    let x = try z([1, 4, 5, 5])
    assertInvalid("permute") { _ = try a.permuted([0, 0]) }
    assertInvalid("permute") { _ = try self.z([1, 1, 1, 1, 1]).permuted([4, 3, 2, 1, 0]) }
    assertInvalid("transpose") { _ = try x.transposed }
    assertInvalid("slice") { _ = try a.slice(axis: 1, 2..<4) }
    assertInvalid("slice") { _ = try a.slice(axis: 2, 0..<1) }
    assertInvalid("sum") { _ = try a.sum(axes: [2]) }
    assertInvalid("sum") { _ = try a.sum(axes: [1, -1]) }
    assertInvalid("mean") { _ = try a.mean(axes: [-3]) }
    assertInvalid("concat") { _ = try Tensor.concat([], axis: 0) }
    assertInvalid("linearCombination") { _ = try Tensor.linearCombination([a, a], [1]) }
    assertInvalid("linearCombination") { _ = try Tensor.linearCombination([], []) }
    assertInvalid("dropout") { _ = try a.dropout(p: 1, seed: 0) }
    assertInvalid("dropout") { _ = try a.dropout(p: -0.1, seed: 0) }
    assertInvalid("conv2d") { _ = try x.conv2d(weight: self.z([2, 4, 7, 7])) }
    assertInvalid("conv2d") { _ = try x.conv2d(weight: self.z([2, 4, 3, 3]), stride: 0) }
    assertInvalid("avgPool2d") { _ = try x.avgPool2d(kernel: 6) }
    assertInvalid("avgPool2d") { _ = try a.avgPool2d(kernel: 1) }
    assertInvalid("globalAvgPool") { _ = try a.globalAvgPool() }
    assertInvalid("groupNorm") {
      _ = try x.groupNorm(groups: 3, gamma: self.z([4]), beta: self.z([4]))
    }
    assertInvalid("softmax") { _ = try self.z([6]).softmaxProbabilities() }
    assertInvalid("item") { _ = try a.item() }
    assertInvalid("Tensor(values:shape:)") {
      _ = try Tensor([1, 2, 3], shape: [2, 2], on: self.cpu)
    }
    // Broadcasting that needs more than the backends' four strided dimensions.
    assertInvalid("add") { _ = try self.z([2, 1, 2, 1, 2]) + self.z([1, 2, 1, 2, 1]) }
  }

  /// Each op that takes two tensors rejects operands of different element types.
  func testMixingElementTypesThrows() throws {
    for (name, body) in try binaryUses(try z([2, 4, 3, 3]), try z([2, 4, 3, 3], .float64)) {
      let e = expectTensorError("float32 with float64 in \(name)", body)
      XCTAssertEqual(e?.kind, "dtypeMismatch", "\(name): \(String(describing: e))")
    }
  }

  /// Tensors of two different backend instances never meet in one op, even two CPU backends.
  func testMixingBackendsThrowsDeviceMismatch() throws {
    var pairs: [(any Backend, any Backend)] = [(cpu, CPUBackend())]
    for other in acceleratorBackends() { pairs.append((cpu, other)) }
    for (b1, b2) in pairs {
      for (name, body) in try binaryUses(try z([2, 4, 3, 3], on: b1), try z([2, 4, 3, 3], on: b2)) {
        let e = expectTensorError("\(b1.name) with \(b2.name) in \(name)", body)
        XCTAssertEqual(e?.kind, "deviceMismatch", "\(name): \(String(describing: e))")
      }
    }
  }

  /// Uses of two compatible-looking tensors a [2, 4, 3, 3] and b (same shape) in every op family.
  func binaryUses(_ a: Tensor, _ b: Tensor) throws -> [(String, () throws -> Void)] {
    let c = try b.reshaped([4, 18])  // c [4, 18], of b's kind
    let (a2, b2) = (try a.reshaped([4, 18]), c)
    let v = try b.reshaped([-1]).slice(axis: 0, 0..<4)  // [4], of b's kind
    return [
      ("add", { _ = try a + b }), ("sub", { _ = try a - b }), ("mul", { _ = try a * b }),
      ("div", { _ = try a / b }), ("maximum", { _ = try a.maximum(b) }),
      ("matmul", { _ = try a2.matmul(b2, transposeOther: true) }),
      ("linear", { _ = try a2.linear(weight: b2, bias: nil) }),
      ("linear bias", { _ = try a2.linear(weight: a2, bias: v) }),
      ("conv2d", { _ = try a.conv2d(weight: b) }),
      (
        "conv2d bias",
        { _ = try a.conv2d(weight: a, bias: try b.reshaped([-1]).slice(axis: 0, 0..<2)) }
      ),
      ("concat", { _ = try Tensor.concat([a, b], axis: 1) }),
      ("groupNorm gamma", { _ = try a.groupNorm(groups: 2, gamma: v, beta: v) }),
      ("batchNorm gamma", { _ = try a.batchNorm(gamma: v, beta: v) }),
      ("softmaxCrossEntropy", { _ = try a2.softmaxCrossEntropy(labels: v) }),
      ("mse", { _ = try a.mse(b) }),
      ("linearCombination", { _ = try Tensor.linearCombination([a, b], [1, 1]) }),
      (
        "error norm",
        {
          _ = try Tensor.scaledErrorSquaredSum(error: a, y0: b, y1: a, atol: 1, rtol: 1)
        }
      ),
    ]
  }
}
