import Foundation

/// A row-major float64 array on the host: the reference side of every comparison. Nothing here
/// calls into the library, so a reference result cannot share a bug with the code under test.
struct HostTensor {
  var shape: [Int]
  var data: [Double]

  init(_ shape: [Int], _ data: [Double]) {
    precondition(data.count == shape.reduce(1, *), "\(data.count) values for shape \(shape)")
    self.shape = shape
    self.data = data
  }

  init(zeros shape: [Int]) {
    self.init(shape, [Double](repeating: 0, count: shape.reduce(1, *)))
  }

  var count: Int { data.count }
  var rank: Int { shape.count }

  /// The element at a full multi-index.
  subscript(_ index: [Int]) -> Double {
    get { data[flatIndex(index, shape)] }
    set { data[flatIndex(index, shape)] = newValue }
  }
}

func rowMajorStrides(_ shape: [Int]) -> [Int] {
  var strides = [Int](repeating: 1, count: shape.count)
  var acc = 1
  for i in stride(from: shape.count - 1, through: 0, by: -1) {
    strides[i] = acc
    acc *= shape[i]
  }
  return strides
}

func flatIndex(_ index: [Int], _ shape: [Int]) -> Int {
  var flat = 0
  for (i, n) in zip(index, shape) {
    precondition(i >= 0 && i < n, "index \(index) out of bounds for \(shape)")
    flat = flat * n + i
  }
  return flat
}

func multiIndex(_ flat: Int, _ shape: [Int]) -> [Int] {
  var index = [Int](repeating: 0, count: shape.count)
  var rest = flat
  for i in stride(from: shape.count - 1, through: 0, by: -1) {
    index[i] = rest % shape[i]
    rest /= shape[i]
  }
  return index
}

/// Float64 reference implementations with plain loops and the textbook definitions.
enum Ref {
  static func map(_ x: HostTensor, _ f: (Double) -> Double) -> HostTensor {
    HostTensor(x.shape, x.data.map(f))
  }

  /// NumPy broadcasting: shapes aligned at the right, size-1 dimensions stretched.
  static func broadcast(_ a: HostTensor, _ b: HostTensor, _ f: (Double, Double) -> Double)
    -> HostTensor
  {
    let r = max(a.rank, b.rank)
    let pa = [Int](repeating: 1, count: r - a.rank) + a.shape
    let pb = [Int](repeating: 1, count: r - b.rank) + b.shape
    let out = zip(pa, pb).map { x, y -> Int in
      precondition(x == y || x == 1 || y == 1, "cannot broadcast \(a.shape) with \(b.shape)")
      return x == 1 ? y : x
    }
    var result = HostTensor(zeros: out)
    for flat in 0..<result.count {
      let idx = multiIndex(flat, out)
      let ia = zip(idx, pa).map { i, n in n == 1 ? 0 : i }
      let ib = zip(idx, pb).map { i, n in n == 1 ? 0 : i }
      result.data[flat] = f(a.data[flatIndex(ia, pa)], b.data[flatIndex(ib, pb)])
    }
    return result
  }

  /// Sum (or mean) over `axes` (all when nil; negative axes count from the end).
  static func reduce(_ x: HostTensor, axes: [Int]?, keepDims: Bool, mean: Bool) -> HostTensor {
    let axes = Set((axes ?? Array(0..<x.rank)).map { $0 < 0 ? $0 + x.rank : $0 })
    let kept = x.shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
    var result = HostTensor(zeros: kept)
    var n = 1
    for a in axes { n *= x.shape[a] }
    for flat in 0..<x.count {
      let idx = multiIndex(flat, x.shape)
      let o = idx.enumerated().map { axes.contains($0.offset) ? 0 : $0.element }
      result[o] += x.data[flat]
    }
    if mean { result.data = result.data.map { $0 / Double(n) } }
    if !keepDims {
      result.shape = x.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
    }
    return result
  }

  /// The adjoint of broadcasting to `x.shape`: sums the broadcast dimensions of `target` away.
  static func sum(_ x: HostTensor, to target: [Int]) -> HostTensor {
    let lead = x.rank - target.count
    var axes = Array(0..<lead)
    for (i, n) in target.enumerated() where n != x.shape[lead + i] { axes.append(lead + i) }
    var r = reduce(x, axes: axes, keepDims: true, mean: false)
    r.shape = target
    return r
  }

  static func reshape(_ x: HostTensor, _ shape: [Int]) -> HostTensor { HostTensor(shape, x.data) }

  /// Output dimension d is input dimension perm[d].
  static func permute(_ x: HostTensor, _ perm: [Int]) -> HostTensor {
    var result = HostTensor(zeros: perm.map { x.shape[$0] })
    for flat in 0..<x.count {
      let idx = multiIndex(flat, x.shape)
      result[perm.map { idx[$0] }] = x.data[flat]
    }
    return result
  }

  static func slice(_ x: HostTensor, axis: Int, _ range: Range<Int>) -> HostTensor {
    let ax = axis < 0 ? axis + x.rank : axis
    var shape = x.shape
    shape[ax] = range.count
    var result = HostTensor(zeros: shape)
    for flat in 0..<result.count {
      var idx = multiIndex(flat, shape)
      idx[ax] += range.lowerBound
      result.data[flat] = x[idx]
    }
    return result
  }

  static func concat(_ parts: [HostTensor], axis: Int) -> HostTensor {
    let ax = axis < 0 ? axis + parts[0].rank : axis
    var shape = parts[0].shape
    shape[ax] = parts.reduce(0) { $0 + $1.shape[ax] }
    var result = HostTensor(zeros: shape)
    var offset = 0
    for p in parts {
      for flat in 0..<p.count {
        var idx = multiIndex(flat, p.shape)
        idx[ax] += offset
        result[idx] = p.data[flat]
      }
      offset += p.shape[ax]
    }
    return result
  }

  /// op(a)·op(b) for matrices, or for rank 3 batched over the first dimension.
  static func matmul(_ a: HostTensor, _ b: HostTensor, transA: Bool = false, transB: Bool = false)
    -> HostTensor
  {
    let batched = a.rank == 3
    let batch = batched ? a.shape[0] : 1
    let (ra, ca) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
    let (rb, cb) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
    let (m, k) = transA ? (ca, ra) : (ra, ca)
    let (k2, n) = transB ? (cb, rb) : (rb, cb)
    precondition(k == k2)
    var result = HostTensor(zeros: batched ? [batch, m, n] : [m, n])
    for s in 0..<batch {
      for i in 0..<m {
        for j in 0..<n {
          var acc = 0.0
          for l in 0..<k {
            let av = a.data[s * ra * ca + (transA ? l * ca + i : i * ca + l)]
            let bv = b.data[s * rb * cb + (transB ? j * cb + l : l * cb + j)]
            acc += av * bv
          }
          result.data[(s * m + i) * n + j] = acc
        }
      }
    }
    return result
  }

  /// x·Wᵀ + b, x [batch, in], W [out, in].
  static func linear(_ x: HostTensor, _ w: HostTensor, _ b: HostTensor?) -> HostTensor {
    var result = HostTensor(zeros: [x.shape[0], w.shape[0]])
    for i in 0..<x.shape[0] {
      for o in 0..<w.shape[0] {
        var acc = b?.data[o] ?? 0
        for j in 0..<x.shape[1] { acc += x[[i, j]] * w[[o, j]] }
        result[[i, o]] = acc
      }
    }
    return result
  }

  /// y[n, o, i, j] = b[o] + Σ x[n, c, i·s − p + u, j·s − p + v]·w[o, c, u, v], zero padding.
  static func conv2d(
    _ x: HostTensor, _ w: HostTensor, _ bias: HostTensor?, stride s: Int, pad p: Int,
    groups: Int = 1
  ) -> HostTensor {
    let (n, h, wd) = (x.shape[0], x.shape[2], x.shape[3])
    let (o, c, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
    let og = o / groups
    let oh = (h + 2 * p - kh) / s + 1
    let ow = (wd + 2 * p - kw) / s + 1
    var y = HostTensor(zeros: [n, o, oh, ow])
    for b in 0..<n {
      for f in 0..<o {
        for i in 0..<oh {
          for j in 0..<ow {
            var acc = bias?.data[f] ?? 0
            for ch in 0..<c {
              for u in 0..<kh {
                for v in 0..<kw {
                  let (yy, xx) = (i * s - p + u, j * s - p + v)
                  if yy < 0 || yy >= h || xx < 0 || xx >= wd { continue }
                  acc += x[[b, (f / og) * c + ch, yy, xx]] * w[[f, ch, u, v]]
                }
              }
            }
            y[[b, f, i, j]] = acc
          }
        }
      }
    }
    return y
  }

  /// Group normalisation of x [N, C, …] with biased variance over each (sample, group).
  static func groupNorm(
    _ x: HostTensor, groups: Int, _ gamma: HostTensor, _ beta: HostTensor, eps: Double
  ) -> HostTensor {
    let (n, c) = (x.shape[0], x.shape[1])
    let hw = x.count / (n * c)
    let cpg = c / groups
    var y = HostTensor(zeros: x.shape)
    for b in 0..<n {
      for g in 0..<groups {
        var values: [Double] = []
        for ch in (g * cpg)..<((g + 1) * cpg) {
          for i in 0..<hw { values.append(x.data[(b * c + ch) * hw + i]) }
        }
        let mu = values.reduce(0, +) / Double(values.count)
        let variance = values.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(values.count)
        for ch in (g * cpg)..<((g + 1) * cpg) {
          for i in 0..<hw {
            let k = (b * c + ch) * hw + i
            y.data[k] =
              (x.data[k] - mu) / (variance + eps).squareRoot() * gamma.data[ch]
              + beta.data[ch]
          }
        }
      }
    }
    return y
  }

  /// Batch normalisation over every axis but 1: (y, mean [C], biased variance [C]).
  static func batchNorm(_ x: HostTensor, _ gamma: HostTensor, _ beta: HostTensor, eps: Double)
    -> (y: HostTensor, mean: HostTensor, variance: HostTensor)
  {
    let (n, c) = (x.shape[0], x.shape[1])
    let hw = x.count / (n * c)
    var mean = HostTensor(zeros: [c])
    var variance = HostTensor(zeros: [c])
    var y = HostTensor(zeros: x.shape)
    for ch in 0..<c {
      var values: [Double] = []
      for b in 0..<n { for i in 0..<hw { values.append(x.data[(b * c + ch) * hw + i]) } }
      let mu = values.reduce(0, +) / Double(values.count)
      let v = values.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(values.count)
      mean.data[ch] = mu
      variance.data[ch] = v
      for b in 0..<n {
        for i in 0..<hw {
          let k = (b * c + ch) * hw + i
          y.data[k] = (x.data[k] - mu) / (v + eps).squareRoot() * gamma.data[ch] + beta.data[ch]
        }
      }
    }
    return (y, mean, variance)
  }

  /// A training-mode batch norm's new running averages from inputs [x, γ, β, mean, variance]:
  /// (1 − m)·old + m·batch mean, and the unbiased batch variance likewise.
  static func batchNormRunning(_ t: [HostTensor], momentum m: Double) -> (
    mean: HostTensor, variance: HostTensor
  ) {
    let b = batchNorm(t[0], t[1], t[2], eps: 1e-5)
    let per = Double(t[0].count / t[0].shape[1])
    var mean = t[3]
    var variance = t[4]
    for c in 0..<mean.count {
      mean.data[c] = (1 - m) * t[3].data[c] + m * b.mean.data[c]
      let unbiased = per > 1 ? b.variance.data[c] * per / (per - 1) : b.variance.data[c]
      variance.data[c] = (1 - m) * t[4].data[c] + m * unbiased
    }
    return (mean, variance)
  }

  /// Evaluation-mode batch norm of inputs [x, γ, β, mean, variance].
  static func batchNormInference(_ t: [HostTensor], eps: Double) -> HostTensor {
    let (x, c) = (t[0], t[0].shape[1])
    let hw = x.count / (x.shape[0] * c)
    var y = x
    for k in 0..<x.count {
      let ch = (k / hw) % c
      y.data[k] =
        (x.data[k] - t[3].data[ch]) / (t[4].data[ch] + eps).squareRoot() * t[1].data[ch]
        + t[2].data[ch]
    }
    return y
  }

  /// Mean over k×k windows every `stride` pixels, no padding.
  static func avgPool(_ x: HostTensor, k: Int, stride s: Int) -> HostTensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1)
    var y = HostTensor(zeros: [n, c, oh, ow])
    for b in 0..<n {
      for ch in 0..<c {
        for i in 0..<oh {
          for j in 0..<ow {
            var acc = 0.0
            for u in 0..<k { for v in 0..<k { acc += x[[b, ch, i * s + u, j * s + v]] } }
            y[[b, ch, i, j]] = acc / Double(k * k)
          }
        }
      }
    }
    return y
  }

  static func softmax(_ logits: HostTensor) -> HostTensor {
    let (rows, classes) = (logits.shape[0], logits.shape[1])
    var p = HostTensor(zeros: logits.shape)
    for r in 0..<rows {
      let row = Array(logits.data[(r * classes)..<((r + 1) * classes)])
      let mx = row.max()!
      let e = row.map { Foundation.exp($0 - mx) }
      let s = e.reduce(0, +)
      for j in 0..<classes { p.data[r * classes + j] = e[j] / s }
    }
    return p
  }

  /// mean over rows of log Σ exp(z) − z[label], a scalar (shape []).
  static func softmaxCrossEntropy(_ logits: HostTensor, _ labels: HostTensor) -> HostTensor {
    let (rows, classes) = (logits.shape[0], logits.shape[1])
    var total = 0.0
    for r in 0..<rows {
      let row = Array(logits.data[(r * classes)..<((r + 1) * classes)])
      let mx = row.max()!
      let lse = mx + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - mx) })
      total += lse - row[Int(labels.data[r])]
    }
    return HostTensor([], [total / Double(rows)])
  }

  static func mse(_ a: HostTensor, _ b: HostTensor) -> HostTensor {
    let s = zip(a.data, b.data).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
    return HostTensor([], [s / Double(a.count)])
  }
}
