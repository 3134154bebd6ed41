/// Sums over contiguous runs in explicit 4-lane vectors with four independent accumulators.
///
/// The compiler may not reorder a floating-point sum, so a plain loop adds one element at a time
/// on one accumulator's latency (about four cycles each). These are the reductions inside group
/// norm and small GEMMs; the lane order changes rounding only at the level of the sum's own
/// error.
extension CPUBackend {
  @inline(__always)
  static func load<T: CPUScalar>(_ p: UnsafeMutablePointer<T>, _ i: Int) -> SIMD4<T> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD4<T>.self)
  }

  /// Σ body(i) over i < n, where `body` gives four lanes at i and `tail` one element.
  @inline(__always)
  static func vectorSum<T: CPUScalar>(
    _ n: Int, _ body: (Int) -> SIMD4<T>, tail: (Int) -> T
  ) -> T {
    var s0 = SIMD4<T>()
    var s1 = SIMD4<T>()
    var s2 = SIMD4<T>()
    var s3 = SIMD4<T>()
    var i = 0
    while i + 16 <= n {
      s0 += body(i)
      s1 += body(i + 4)
      s2 += body(i + 8)
      s3 += body(i + 12)
      i += 16
    }
    while i + 4 <= n {
      s0 += body(i)
      i += 4
    }
    var sum = ((s0 + s1) + (s2 + s3)).sum()
    while i < n {
      sum += tail(i)
      i += 1
    }
    return sum
  }

  /// Σ a[i]
  @inline(__always)
  static func sum<T: CPUScalar>(_ a: UnsafeMutablePointer<T>, _ n: Int) -> T {
    vectorSum(n, { load(a, $0) }, tail: { a[$0] })
  }

  /// Σ a[i]·b[i]
  @inline(__always)
  static func dot<T: CPUScalar>(
    _ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>, _ n: Int
  )
    -> T
  {
    vectorSum(n, { load(a, $0) * load(b, $0) }, tail: { a[$0] * b[$0] })
  }

  /// Σ (a[i] − mu)²
  @inline(__always)
  static func squaredDeviations<T: CPUScalar>(_ a: UnsafeMutablePointer<T>, _ n: Int, from mu: T)
    -> T
  {
    vectorSum(
      n,
      {
        let d = load(a, $0) - mu
        return d * d
      }, tail: { (a[$0] - mu) * (a[$0] - mu) })
  }

  /// Σ g[i]·(x[i] − mu)
  @inline(__always)
  static func dotDeviations<T: CPUScalar>(
    _ g: UnsafeMutablePointer<T>, _ x: UnsafeMutablePointer<T>, _ n: Int, from mu: T
  ) -> T {
    vectorSum(n, { load(g, $0) * (load(x, $0) - mu) }, tail: { g[$0] * (x[$0] - mu) })
  }
}
