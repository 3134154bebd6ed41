import Kernels

extension Tensor {
  /// Σ over `axes` (all axes when nil), keeping reduced axes as size 1 when `keepDims`.
  public func sum(axes: [Int]? = nil, keepDims: Bool = false) throws -> Tensor {
    try reduce(axes: axes, keepDims: keepDims, mean: false)
  }

  /// The mean over `axes` (all axes when nil).
  public func mean(axes: [Int]? = nil, keepDims: Bool = false) throws -> Tensor {
    try reduce(axes: axes, keepDims: keepDims, mean: true)
  }

  /// Sums broadcast dimensions away so that the result has `target`'s shape: the adjoint of
  /// broadcasting `target` up to `self.shape`.
  public func sum(to target: [Int]) throws -> Tensor {
    if shape == target { return self }
    let lead = rank - target.count
    guard lead >= 0 else {
      throw TensorError.shapeMismatch(op: "sum(to:)", lhs: shape, rhs: target)
    }
    var axes = Array(0..<lead)
    for (i, n) in target.enumerated() where n != shape[lead + i] {
      guard n == 1 else { throw TensorError.shapeMismatch(op: "sum(to:)", lhs: shape, rhs: target) }
      axes.append(lead + i)
    }
    return try sum(axes: axes, keepDims: true).reshaped(target)
  }

  private func reduce(axes: [Int]?, keepDims: Bool, mean: Bool) throws -> Tensor {
    let op = mean ? "mean" : "sum"
    let axes = try normalizedAxes(axes ?? Array(0..<rank), op: op)
    let reduced = axes.reduce(1) { $0 * shape[$1] }
    let keptShape = shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
    let outShape =
      keepDims ? keptShape : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
    let scale = mean ? 1 / Double(max(1, reduced)) : 1
    // Runs of adjacent reduced axes are reduced in one pass each, innermost run first.
    var current = detached
    var curShape = shape
    var runs: [(Int, Int)] = []
    for a in axes {
      if let last = runs.last, last.1 == a {
        runs[runs.count - 1].1 = a + 1
      } else {
        runs.append((a, a + 1))
      }
    }
    if runs.isEmpty {
      current = try current.affine(scale: 1)
    }
    for (k, (lo, hi)) in runs.reversed().enumerated() {
      let outer = curShape[..<lo].reduce(1, *)
      let n = curShape[lo..<hi].reduce(1, *)
      let inner = curShape[hi...].reduce(1, *)
      var next = curShape
      for i in lo..<hi { next[i] = 1 }
      let out = try current.empty(next)
      let s = k == runs.count - 1 ? scale : 1
      if n == 0 {
        try backend.fill(out.buffer, value: 0, count: out.count, dtype: dtype)
      } else {
        try backend.reduceSum(
          current.buffer, out.buffer, shape: ReductionShape(outer: outer, n: n, inner: inner),
          scale: s, dtype: dtype)
      }
      current = out
      curShape = next
    }
    let result = Tensor(shape: outShape, dtype: dtype, backend: backend, buffer: current.buffer)
    let inShape = shape
    return result.recorded(from: self) { g in
      // Broadcast the cotangent back over the reduced axes.
      let ones = try Tensor.ones(inShape, dtype: g.dtype, on: g.backend)
      return [try (ones * g.reshaped(keptShape)).affine(scale: scale)]
    }
  }

  func normalizedAxes(_ axes: [Int], op: String) throws -> [Int] {
    let n = try axes.map { a -> Int in
      let b = a < 0 ? a + rank : a
      guard b >= 0 && b < rank else {
        throw TensorError.invalidArgument(op: op, reason: "axis \(a) out of range for rank \(rank)")
      }
      return b
    }
    guard Set(n).count == n.count else {
      throw TensorError.invalidArgument(op: op, reason: "repeated axis in \(axes)")
    }
    return n.sorted()
  }
}
