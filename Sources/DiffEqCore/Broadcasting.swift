import Kernels

/// NumPy broadcasting, lowered to the 4-D strided index space the backends implement.
///
/// Shapes are aligned at their trailing dimensions; a dimension of size 1 (or a missing leading
/// one) stretches to the other operand's size. After alignment, adjacent dimensions that are
/// contiguous in both operands are merged, so any pattern with at most four alternating runs of
/// broadcast and non-broadcast dimensions is supported (every pattern this library uses, e.g.
/// [N,C,H,W] with [C,1,1], [1,C,1,1], [N,1], scalars, and equal shapes of any rank).
enum Broadcast {
  /// The broadcast result shape, or a shape-mismatch error naming `op`.
  static func shape(_ a: [Int], _ b: [Int], op: String) throws -> [Int] {
    if a == b { return a }
    let r = max(a.count, b.count)
    let pa = Array(repeating: 1, count: r - a.count) + a
    let pb = Array(repeating: 1, count: r - b.count) + b
    return try zip(pa, pb).map { x, y in
      if x == y || y == 1 { return x }
      if x == 1 { return y }
      throw TensorError.shapeMismatch(op: op, lhs: a, rhs: b)
    }
  }

  /// The layout reading `a` and `b` into a tensor of shape `out`.
  static func layout(_ a: [Int], _ b: [Int], out: [Int], op: String) throws -> BroadcastLayout {
    // Equal shapes (the common case) are one contiguous run; skip the general alignment.
    if a == out && b == out {
      let n = out.reduce(1, *)
      return BroadcastLayout(shape: [1, 1, 1, n], aStrides: [0, 0, 0, 1], bStrides: [0, 0, 0, 1])
    }
    func strides(_ s: [Int]) -> [Int] {
      let p = Array(repeating: 1, count: out.count - s.count) + s
      var st = Array(repeating: 0, count: p.count)
      var acc = 1
      for i in stride(from: p.count - 1, through: 0, by: -1) {
        st[i] = p[i] == 1 && out[i] != 1 ? 0 : acc
        acc *= p[i]
      }
      return st
    }
    var dims = zip(out, zip(strides(a), strides(b))).map { (n: $0, a: $1.0, b: $1.1) }
      .filter { $0.n != 1 }
    // Merge dimension i into i+1 where both operands step through them contiguously.
    var i = dims.count - 2
    while i >= 0 {
      let (x, y) = (dims[i], dims[i + 1])
      if x.a == y.a * y.n && x.b == y.b * y.n {
        dims[i + 1] = (x.n * y.n, y.a, y.b)
        dims.remove(at: i)
      }
      i -= 1
    }
    guard dims.count <= 4 else {
      throw TensorError.invalidArgument(
        op: op, reason: "broadcasting \(a) with \(b) needs \(dims.count) dimensions; at most 4")
    }
    let pad = 4 - dims.count
    let shape = Array(repeating: 1, count: pad) + dims.map(\.n)
    return BroadcastLayout(
      shape: shape, aStrides: Array(repeating: 0, count: pad) + dims.map(\.a),
      bStrides: Array(repeating: 0, count: pad) + dims.map(\.b))
  }
}
