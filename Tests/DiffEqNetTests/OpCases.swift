import DiffEqNet
import Foundation

/// One op under test: how to draw its inputs, how to run it, and its float64 reference. The same
/// catalog drives the forward checks (ForwardTests), the finite-difference gradient checks
/// (GradientTests) and the backend-versus-CPU comparisons (BackendConsistencyTests).
struct OpCase {
  let name: String
  /// Fresh inputs drawn from a generator seeded by the case name.
  let inputs: (inout RandomState) -> [HostTensor]
  let op: ([Tensor]) throws -> Tensor
  /// nil where the result has no closed form independent of the backend (dropout's mask).
  let reference: (([HostTensor]) -> HostTensor)?
  /// Indices of the inputs whose gradients are checked (empty: the op is not differentiable).
  let differentiable: [Int]?
  /// Element counts of intermediate buffers to poison besides the output and input sizes.
  let scratch: [Int]

  init(
    _ name: String, differentiable: [Int]? = nil, scratch: [Int] = [],
    inputs: @escaping (inout RandomState) -> [HostTensor],
    op: @escaping ([Tensor]) throws -> Tensor,
    reference: (([HostTensor]) -> HostTensor)?
  ) {
    self.name = name
    self.inputs = inputs
    self.op = op
    self.reference = reference
    self.differentiable = differentiable
    self.scratch = scratch
  }

  func differentiableInputs(_ count: Int) -> [Int] { differentiable ?? Array(0..<count) }
}

/// The catalog, grouped by family. Shapes include 1, primes (7, 13, 31) and round sizes (16, 64).
enum OpCases {
  static var all: [OpCase] {
    binary + affine + linearCombination + lmUpdate + unary + reductions + shapes + matmul + linear
      + conv2d + timeConcatConv2d + groupedConv2d + groupNorm + batchNorm + pooling + losses
      + dropout
  }

  // MARK: Broadcasting binaries

  static let broadcastPatterns: [(name: String, a: [Int], b: [Int])] = [
    ("[N,C,H,W]∘[C,1,1]", [2, 3, 4, 5], [3, 1, 1]),
    ("[N,C,H,W]∘[1,C,1,1]", [3, 7, 2, 2], [1, 7, 1, 1]),
    ("[N,K]∘[K]", [64, 13], [13]),
    ("[N,K]∘[1]", [7, 31], [1]),
    ("[N,K]∘[N,K]", [16, 7], [16, 7]),
    ("[C,1,1]∘[N,C,H,W]", [5, 1, 1], [2, 5, 3, 3]),
    ("[N,1]∘[N,K]", [31, 1], [31, 16]),
    ("[1]∘[1]", [1], [1]),
  ]

  static var binary: [OpCase] {
    let ops: [(String, (Tensor, Tensor) throws -> Tensor, (Double, Double) -> Double)] = [
      ("add", { try $0 + $1 }, { $0 + $1 }),
      ("sub", { try $0 - $1 }, { $0 - $1 }),
      ("mul", { try $0 * $1 }, { $0 * $1 }),
      ("div", { try $0 / $1 }, { $0 / $1 }),
      ("maximum", { try $0.maximum($1) }, { Swift.max($0, $1) }),
    ]
    return ops.flatMap { name, f, r in
      broadcastPatterns.map { p in
        OpCase(
          "\(name) \(p.name)",
          inputs: { rng in
            switch name {
            // The divisor stays away from 0.
            case "div": return [rng.normal(p.a), rng.awayFromZero(p.b, 0.5, 2)]
            // Disjoint grids: no ties, so maximum is differentiable at every input.
            case "maximum": return [rng.grid(p.a, offset: 0.025), rng.grid(p.b, offset: 0.075)]
            default: return [rng.normal(p.a), rng.normal(p.b)]
            }
          },
          op: { try f($0[0], $0[1]) },
          reference: { Ref.broadcast($0[0], $0[1], r) })
      }
    }
  }

  // MARK: Scalar affine ops

  static var affine: [OpCase] {
    let cases: [(String, [Int], (Tensor) throws -> Tensor, (Double) -> Double)] = [
      (
        "affine(scale: -1.7, shift: 0.3)", [13, 7], { try $0.affine(scale: -1.7, shift: 0.3) },
        { -1.7 * $0 + 0.3 }
      ),
      ("affine(scale: 0.5)", [2, 3, 4, 5], { try $0.affine(scale: 0.5) }, { 0.5 * $0 }),
      ("x * 2.5", [64], { try $0 * 2.5 }, { $0 * 2.5 }),
      ("2.5 * x", [1], { try 2.5 * $0 }, { 2.5 * $0 }),
      ("x / 4", [7, 13], { try $0 / 4 }, { $0 / 4 }),
      ("x + 1.5", [31], { try $0 + 1.5 }, { $0 + 1.5 }),
      ("1.5 + x", [16, 16], { try 1.5 + $0 }, { 1.5 + $0 }),
      ("x - 0.75", [7, 1, 13], { try $0 - 0.75 }, { $0 - 0.75 }),
      ("0.75 - x", [13, 7], { try 0.75 - $0 }, { 0.75 - $0 }),
      ("-x", [2, 31], { try -$0 }, { -$0 }),
    ]
    return cases.map { name, shape, f, r in
      OpCase(
        name, inputs: { [$0.normal(shape)] }, op: { try f($0[0]) },
        reference: { Ref.map($0[0], r) })
    }
  }

  // MARK: Linear combinations (the ODE solvers' stage sums)

  static var linearCombination: [OpCase] {
    let cases: [([Int], [Double])] = [
      ([2, 3, 7, 7], [0.5, -1.25, 1]), ([13], [2]), ([64, 1], [1, 1, -1, 0.1, 0, -0.7, 0.2]),
    ]
    return cases.map { shape, coefficients in
      OpCase(
        "linearCombination \(coefficients) of \(shape)",
        inputs: { rng in coefficients.map { _ in rng.normal(shape) } },
        op: { try Tensor.linearCombination($0, coefficients) },
        reference: { terms in
          HostTensor(
            shape,
            (0..<terms[0].count).map { i in
              zip(terms, coefficients).reduce(0) { $0 + $1.1 * $1.0.data[i] }
            })
        })
    }
  }

  /// The LM-ResNet update (1 − k)·u + k·previous + scale·branch with k a [1] tensor; without a
  /// branch (a dropped block) the inputs are u, previous, k. Sizes cover the OpenCL gradient's
  /// several work-groups of partial sums for dk.
  static var lmUpdate: [OpCase] {
    let cases: [([Int], Double, Bool)] = [
      ([2, 3, 7, 7], 1, true), ([13], 0.7, true), ([4, 16, 9, 9], 1.6, true), ([5, 6], 1, false),
      ([3, 8, 17, 17], 0, false),
    ]
    return cases.map { shape, scale, hasBranch in
      OpCase(
        "lmUpdate \(shape) scale \(scale)\(hasBranch ? "" : " dropped")",
        inputs: { rng in
          [rng.normal(shape), rng.normal(shape), rng.uniform([1], -0.9, 0.9)]
            + (hasBranch ? [rng.normal(shape)] : [])
        },
        op: {
          try $0[0].lmUpdate(
            previous: $0[1], branch: $0.count > 3 ? $0[3] : nil, k: $0[2], scale: scale)
        },
        reference: { t in
          let k = t[2].data[0]
          return HostTensor(
            shape,
            (0..<t[0].count).map { i in
              (1 - k) * t[0].data[i] + k * t[1].data[i] + (t.count > 3 ? scale * t[3].data[i] : 0)
            })
        })
    }
  }

  // MARK: Point-wise functions

  static var unary: [OpCase] {
    typealias Draw = (inout RandomState, [Int]) -> HostTensor
    let kinked: Draw = { $0.awayFromZero($1) }  // relu, abs, elu: no input near the kink at 0
    let cases: [(String, (Tensor) throws -> Tensor, (Double) -> Double, Draw)] = [
      ("relu", { try $0.relu() }, { Swift.max($0, 0) }, kinked),
      ("tanh", { try $0.tanh() }, { Foundation.tanh($0) }, { $0.normal($1, std: 1.5) }),
      (
        "sigmoid", { try $0.sigmoid() }, { 1 / (1 + Foundation.exp(-$0)) },
        { $0.normal($1, std: 2) }
      ),
      (
        "softplus", { try $0.softplus() }, { Foundation.log1p(Foundation.exp($0)) },
        { $0.uniform($1, -6, 6) }
      ),
      ("elu", { try $0.elu() }, { $0 > 0 ? $0 : Foundation.expm1($0) }, kinked),
      ("exp", { try $0.exp() }, { Foundation.exp($0) }, { $0.uniform($1, -2, 2) }),
      ("log", { try $0.log() }, { Foundation.log($0) }, { $0.uniform($1, 0.2, 3) }),
      ("square", { try $0.square() }, { $0 * $0 }, { $0.normal($1) }),
      ("sqrt", { try $0.sqrt() }, { $0.squareRoot() }, { $0.uniform($1, 0.2, 3) }),
      ("abs", { try $0.abs() }, { Swift.abs($0) }, kinked),
      ("reciprocal", { try $0.reciprocal() }, { 1 / $0 }, { $0.awayFromZero($1, 0.5, 2) }),
    ]
    let shapes: [[Int]] = [[1], [13, 7], [2, 3, 16, 16]]
    return cases.flatMap { name, f, r, draw in
      shapes.map { shape in
        OpCase(
          "\(name) \(shape)", inputs: { [draw(&$0, shape)] }, op: { try f($0[0]) },
          reference: { Ref.map($0[0], r) })
      }
    }
  }

  // MARK: Reductions

  static var reductions: [OpCase] {
    let x = [7, 1, 13, 4]
    let sums: [([Int]?, Bool)] = [
      (nil, false), (nil, true), ([0], false), ([1], true), ([2], false), ([3], true),
      ([0, 2], false), ([0, 2], true), ([1, 3], false), ([1, 2, 3], true), ([0, 1, 2, 3], false),
      ([-1], false), ([-3, -1], true), ([], false),
    ]
    let means: [([Int]?, Bool)] = [
      (nil, false), ([0], true), ([2, 3], false), ([0, 2], true), ([-1], false), ([1, 2, 3], true),
    ]
    func reduceCase(_ mean: Bool, _ axes: [Int]?, _ keep: Bool) -> OpCase {
      let name =
        "\(mean ? "mean" : "sum")(axes: \(axes.map { "\($0)" } ?? "nil"), keepDims: \(keep))"
      return OpCase(
        name, inputs: { [$0.normal(x)] },
        op: {
          mean
            ? try $0[0].mean(axes: axes, keepDims: keep) : try $0[0].sum(axes: axes, keepDims: keep)
        },
        reference: { Ref.reduce($0[0], axes: axes, keepDims: keep, mean: mean) })
    }
    var cases =
      sums.map { reduceCase(false, $0.0, $0.1) } + means.map { reduceCase(true, $0.0, $0.1) }
    cases.append(
      OpCase(
        "sum() [64]", inputs: { [$0.normal([64])] }, op: { try $0[0].sum() },
        reference: { Ref.reduce($0[0], axes: nil, keepDims: false, mean: false) }))
    let targets: [([Int], [Int])] = [
      ([2, 3, 4, 5], [3, 1, 1]), ([2, 3, 4, 5], [1, 3, 1, 1]), ([64, 13], [13]), ([7, 31], [1]),
      ([31, 16], [31, 1]), ([7, 13], [7, 13]),
    ]
    cases += targets.map { from, to in
      OpCase(
        "sum(to: \(to)) of \(from)", inputs: { [$0.normal(from)] }, op: { try $0[0].sum(to: to) },
        reference: { Ref.sum($0[0], to: to) })
    }
    return cases
  }

  // MARK: Shape ops

  static var shapes: [OpCase] {
    var cases: [OpCase] = []
    for (from, to) in [([6, 35], [2, 3, 5, 7]), ([2, 3, 5, 7], [-1, 7]), ([1], [1, 1, 1])] {
      let known = to.filter { $0 != -1 }.reduce(1, *)
      let resolved = to.map { $0 == -1 ? from.reduce(1, *) / known : $0 }
      cases.append(
        OpCase(
          "reshaped \(from) → \(to)", inputs: { [$0.normal(from)] },
          op: { try $0[0].reshaped(to) }, reference: { Ref.reshape($0[0], resolved) }))
    }
    cases.append(
      OpCase(
        "transposed [7,13]", inputs: { [$0.normal([7, 13])] }, op: { try $0[0].transposed },
        reference: { Ref.permute($0[0], [1, 0]) }))
    let perms: [([Int], [Int])] = [
      ([13, 31], [1, 0]), ([1, 16], [1, 0]),
      ([3, 7, 4], [2, 0, 1]), ([3, 7, 4], [0, 2, 1]), ([3, 7, 4], [1, 0, 2]),
      ([2, 3, 4, 5], [0, 2, 3, 1]), ([2, 3, 4, 5], [3, 1, 0, 2]), ([2, 3, 4, 5], [0, 1, 3, 2]),
      ([2, 3, 4, 5], [0, 1, 2, 3]), ([7, 1, 13, 2], [3, 2, 1, 0]),
    ]
    cases += perms.map { shape, perm in
      OpCase(
        "permuted \(shape) by \(perm)", inputs: { [$0.normal(shape)] },
        op: { try $0[0].permuted(perm) }, reference: { Ref.permute($0[0], perm) })
    }
    let slices: [([Int], Int, Range<Int>)] = [
      ([7, 5], 0, 2..<5), ([2, 6, 3, 3], 1, 1..<4), ([4, 13], -1, 0..<1), ([13, 7], 1, 0..<7),
      ([2, 3, 31], 2, 30..<31),
    ]
    cases += slices.map { shape, axis, range in
      OpCase(
        "slice \(shape) axis \(axis) \(range)", inputs: { [$0.normal(shape)] },
        op: { try $0[0].slice(axis: axis, range) },
        reference: { Ref.slice($0[0], axis: axis, range) })
    }
    let concats: [([[Int]], Int)] = [
      ([[2, 3, 4, 4], [2, 1, 4, 4]], 1),  // appending a time channel
      ([[1, 16, 7, 7], [1, 1, 7, 7]], 1),
      ([[2, 2, 3], [2, 5, 3], [2, 1, 3]], 1),
      ([[1, 5], [3, 5], [2, 5]], 0),
      ([[7, 2], [7, 3]], -1),
    ]
    cases += concats.map { shapes, axis in
      OpCase(
        "concat \(shapes) axis \(axis)", inputs: { rng in shapes.map { rng.normal($0) } },
        op: { try Tensor.concat($0, axis: axis) }, reference: { Ref.concat($0, axis: axis) })
    }
    return cases
  }

  // MARK: Matrix products

  static var matmul: [OpCase] {
    var cases: [OpCase] = []
    // (batch, m, k, n); batch nil for rank 2.
    let sizes: [(Int?, Int, Int, Int)] = [
      (nil, 7, 13, 31), (nil, 1, 64, 1), (nil, 16, 1, 16), (3, 5, 7, 4), (1, 13, 7, 16),
      (nil, 37, 41, 29),  // past CPUBackend.smallGEMMVolume: OpenBLAS
    ]
    for (batch, m, k, n) in sizes {
      for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let lead = batch.map { [$0] } ?? []
        let a = lead + (ta ? [k, m] : [m, k])
        let b = lead + (tb ? [n, k] : [k, n])
        cases.append(
          OpCase(
            "matmul \(a)·\(b) transposeSelf: \(ta) transposeOther: \(tb)",
            inputs: { [$0.normal(a), $0.normal(b)] },
            op: { try $0[0].matmul($0[1], transposeSelf: ta, transposeOther: tb) },
            reference: { Ref.matmul($0[0], $0[1], transA: ta, transB: tb) }))
      }
    }
    return cases
  }

  static var linear: [OpCase] {
    let sizes: [(Int, Int, Int, Bool)] = [(7, 13, 5, true), (7, 13, 5, false), (1, 64, 16, true)]
    return sizes.map { n, i, o, bias in
      OpCase(
        "linear [\(n),\(i)]→\(o) bias: \(bias)",
        inputs: { rng in
          [rng.normal([n, i]), rng.normal([o, i], std: 0.3)] + (bias ? [rng.normal([o])] : [])
        },
        op: { try $0[0].linear(weight: $0[1], bias: $0.count > 2 ? $0[2] : nil) },
        reference: { Ref.linear($0[0], $0[1], $0.count > 2 ? $0[2] : nil) })
    }
  }

  // MARK: Convolution

  static var conv2d: [OpCase] {
    // (x shape, out channels, kernel, stride, padding, bias)
    let cases: [([Int], Int, Int, Int, Int, Bool)] = [
      ([2, 3, 7, 7], 5, 1, 1, 0, true),
      ([2, 4, 7, 7], 3, 1, 2, 0, false),
      ([1, 2, 5, 5], 2, 1, 1, 1, true),
      ([2, 3, 7, 9], 4, 3, 1, 1, true),
      ([1, 2, 13, 7], 3, 3, 1, 0, false),
      ([2, 3, 9, 7], 4, 3, 2, 1, true),
      ([2, 1, 7, 7], 1, 3, 2, 0, false),
      ([2, 4, 16, 16], 8, 4, 2, 1, true),
      ([1, 3, 13, 13], 2, 4, 2, 0, false),
      // The CPU backend's other lowerings: several small images per GEMM with kernel-row taps,
      // backward data as a flipped-kernel convolution (≥ 24 input channels), stride-2 taps with
      // their reverse expansion, and a pointwise kernel over a multi-image chunk.
      ([4, 12, 6, 6], 8, 3, 1, 1, true),
      ([2, 24, 5, 5], 8, 3, 1, 1, false),
      ([2, 12, 8, 8], 6, 4, 2, 1, false),
      ([5, 16, 5, 5], 6, 1, 1, 0, false),
      // Winograd F(2×2, 3×3) on the CPU backend in float32 (≥ 16 channels on each side), whose
      // gradients the consistency tests compare with OpenCL's.
      ([2, 16, 6, 7], 17, 3, 1, 1, true),
    ]
    return cases.map { x, o, k, s, p, bias in
      let oh = (x[2] + 2 * p - k) / s + 1
      let ow = (x[3] + 2 * p - k) / s + 1
      return OpCase(
        "conv2d \(x) * [\(o),\(x[1]),\(k),\(k)] stride \(s) padding \(p) bias: \(bias)",
        // The batch-wide im2col matrix and GEMM result of the default lowering.
        scratch: [x[1] * k * k * x[0] * oh * ow, o * x[0] * oh * ow],
        inputs: { rng in
          [rng.normal(x), rng.normal([o, x[1], k, k], std: 0.3)] + (bias ? [rng.normal([o])] : [])
        },
        op: {
          try $0[0].conv2d(weight: $0[1], bias: $0.count > 2 ? $0[2] : nil, stride: s, padding: p)
        },
        reference: { Ref.conv2d($0[0], $0[1], $0.count > 2 ? $0[2] : nil, stride: s, pad: p) })
    }
  }

  /// conv2d of [t·1, x] (ODE-Net's ConcatConv2d): the reference convolves the concatenation,
  /// time channel first, zero in the padding.
  static var timeConcatConv2d: [OpCase] {
    // (x shape, out channels, kernel, stride, padding, bias, t)
    let cases: [([Int], Int, Int, Int, Int, Bool, Double)] = [
      ([2, 3, 7, 7], 5, 3, 1, 1, true, 0.5),
      ([1, 1, 6, 5], 2, 3, 2, 1, false, -1.25),
      ([2, 4, 9, 7], 3, 5, 3, 2, true, 2),
      ([3, 2, 4, 4], 4, 1, 1, 0, true, 0.75),
    ]
    return cases.map { x, o, k, s, p, bias, t in
      OpCase(
        "timeConcatConv2d t = \(t), \(x) * [\(o),\(x[1] + 1),\(k),\(k)] stride \(s) padding \(p) "
          + "bias: \(bias)",
        inputs: { rng in
          [rng.normal(x), rng.normal([o, x[1] + 1, k, k], std: 0.3)]
            + (bias ? [rng.normal([o])] : [])
        },
        op: {
          try $0[0].timeConcatConv2d(
            time: t, weight: $0[1], bias: $0.count > 2 ? $0[2] : nil, stride: s, padding: p)
        },
        reference: { inputs in
          let x = inputs[0]
          let plane = x.shape[2] * x.shape[3]
          var joined = HostTensor(zeros: [x.shape[0], x.shape[1] + 1, x.shape[2], x.shape[3]])
          for n in 0..<x.shape[0] {
            let to = n * (x.shape[1] + 1) * plane
            for e in 0..<plane { joined.data[to + e] = t }
            for e in 0..<(x.shape[1] * plane) {
              joined.data[to + plane + e] = x.data[n * x.shape[1] * plane + e]
            }
          }
          return Ref.conv2d(
            joined, inputs[1], inputs.count > 2 ? inputs[2] : nil, stride: s, pad: p)
        })
    }
  }

  /// Grouped convolutions (weight [O, C/G, k, k]), on both backends' grouped primitives.
  static var groupedConv2d: [OpCase] {
    // (x shape, out channels, groups, kernel, stride, padding, bias)
    let cases: [([Int], Int, Int, Int, Int, Int, Bool)] = [
      ([2, 4, 7, 7], 6, 2, 3, 1, 1, true),
      ([2, 8, 9, 9], 8, 8, 3, 2, 1, false),
      ([1, 6, 5, 7], 9, 3, 1, 1, 0, true),
      ([3, 12, 8, 8], 12, 4, 3, 1, 1, false),
    ]
    return cases.map { x, o, groups, k, s, p, hasBias in
      let wShape = [o, x[1] / groups, k, k]
      return OpCase(
        "groupedConv2d \(x) → \(o) groups \(groups) k\(k) s\(s) p\(p)\(hasBias ? " bias" : "")",
        inputs: { rng in
          [rng.normal(x), rng.normal(wShape, std: 0.3)] + (hasBias ? [rng.normal([o])] : [])
        },
        op: {
          try $0[0].conv2d(
            weight: $0[1], bias: $0.count > 2 ? $0[2] : nil, stride: s, padding: p, groups: groups)
        },
        reference: {
          Ref.conv2d(
            $0[0], $0[1], $0.count > 2 ? $0[2] : nil, stride: s, pad: p, groups: groups)
        })
    }
  }

  // MARK: Normalisation

  static var groupNorm: [OpCase] {
    let cases: [([Int], Int)] = [
      ([2, 6, 4, 4], 3), ([1, 4, 7, 7], 1), ([3, 8, 5, 3], 8), ([4, 6, 13], 2), ([16, 4], 2),
    ]
    // Each shape plain and with the fused ReLU (whose reference applies max(0, ·) after).
    return cases.flatMap { x, groups in
      let c = x[1]
      return [false, true].map { relu in
        OpCase(
          "groupNorm \(x) groups \(groups)\(relu ? " relu" : "")",
          inputs: { rng in
            [rng.normal(x, mean: 0.5, std: 2), rng.normal([c], mean: 1, std: 0.3), rng.normal([c])]
          },
          op: { try $0[0].groupNorm(groups: groups, gamma: $0[1], beta: $0[2], relu: relu) },
          reference: {
            let y = Ref.groupNorm($0[0], groups: groups, $0[1], $0[2], eps: 1e-5)
            return relu ? Ref.map(y) { max(0, $0) } : y
          })
      }
    }
  }

  static var batchNorm: [OpCase] {
    let shapes: [[Int]] = [[7, 3, 4, 4], [16, 5], [2, 4, 3, 1], [3, 2, 3, 9]]
    return shapes.flatMap { x -> [OpCase] in
      let c = x[1]
      let draw: (inout RandomState) -> [HostTensor] = { rng in
        [rng.normal(x, mean: -0.7, std: 1.5), rng.normal([c], mean: 1, std: 0.3), rng.normal([c])]
      }
      return [
        OpCase(
          "batchNorm \(x)", inputs: draw,
          op: { try $0[0].batchNorm(gamma: $0[1], beta: $0[2]).0 },
          reference: { Ref.batchNorm($0[0], $0[1], $0[2], eps: 1e-5).y }),
        OpCase(
          "batchNorm \(x) mean", differentiable: [], inputs: draw,
          op: { try $0[0].batchNorm(gamma: $0[1], beta: $0[2]).mean },
          reference: { Ref.batchNorm($0[0], $0[1], $0[2], eps: 1e-5).mean }),
        OpCase(
          "batchNorm \(x) variance", differentiable: [], inputs: draw,
          op: { try $0[0].batchNorm(gamma: $0[1], beta: $0[2]).variance },
          reference: { Ref.batchNorm($0[0], $0[1], $0[2], eps: 1e-5).variance }),
        // The fused ReLU: its reference applies max(0, ·) after the norm.
        OpCase(
          "batchNorm \(x) relu", inputs: draw,
          op: { try $0[0].batchNorm(gamma: $0[1], beta: $0[2], relu: true).0 },
          reference: { Ref.map(Ref.batchNorm($0[0], $0[1], $0[2], eps: 1e-5).y) { max(0, $0) } }),
      ]
    } + batchNormRunning + batchNormInference
  }

  /// The running averages a training-mode batch norm returns beside its output (momentum 0.1,
  /// unbiased variance), from random previous averages.
  static var batchNormRunning: [OpCase] {
    let shapes: [[Int]] = [[7, 3, 4, 4], [16, 5], [1, 2, 1, 1]]
    return shapes.flatMap { x -> [OpCase] in
      let c = x[1]
      let draw: (inout RandomState) -> [HostTensor] = { rng in
        [
          rng.normal(x, mean: 0.4, std: 1.2), rng.normal([c], mean: 1, std: 0.3), rng.normal([c]),
          rng.normal([c]), rng.uniform([c], 0.5, 2),
        ]
      }
      // With the fused ReLU, which must leave the running statistics those of the norm.
      let run = { (t: [Tensor]) in
        try t[0].batchNorm(
          gamma: t[1], beta: t[2], runningMean: t[3], runningVariance: t[4], momentum: 0.1,
          relu: true)
      }
      return [
        OpCase(
          "batchNorm \(x) running mean", differentiable: [], inputs: draw,
          op: { try run($0).runningMean },
          reference: { Ref.batchNormRunning($0, momentum: 0.1).mean }),
        OpCase(
          "batchNorm \(x) running variance", differentiable: [], inputs: draw,
          op: { try run($0).runningVariance },
          reference: { Ref.batchNormRunning($0, momentum: 0.1).variance }),
      ]
    }
  }

  /// Evaluation mode: given statistics, differentiable in x, gamma and beta.
  static var batchNormInference: [OpCase] {
    let shapes: [[Int]] = [[5, 3, 4, 4], [16, 5], [2, 4, 3, 1]]
    return shapes.map { x in
      let c = x[1]
      return OpCase(
        "batchNormInference \(x)", differentiable: [0, 1, 2],
        inputs: { rng in
          [
            rng.normal(x, mean: -0.3, std: 1.5), rng.normal([c], mean: 1, std: 0.3),
            rng.normal([c]), rng.normal([c]), rng.uniform([c], 0.5, 2),
          ]
        },
        op: {
          try $0[0].batchNormInference(gamma: $0[1], beta: $0[2], mean: $0[3], variance: $0[4])
        },
        reference: { Ref.batchNormInference($0, eps: 1e-5) })
    }
  }

  // MARK: Pooling

  static var pooling: [OpCase] {
    // (x shape, kernel, stride or nil for the default = kernel)
    let pools: [([Int], Int, Int?)] = [
      ([2, 3, 8, 8], 2, nil), ([1, 2, 7, 9], 3, 2), ([2, 2, 5, 5], 2, 1), ([1, 3, 7, 7], 2, 2),
      ([2, 1, 9, 9], 3, 3), ([1, 1, 1, 1], 1, nil),
    ]
    var cases = pools.map { x, k, s in
      OpCase(
        "avgPool2d \(x) kernel \(k) stride \(s.map(String.init) ?? "default")",
        inputs: { [$0.normal(x)] }, op: { try $0[0].avgPool2d(kernel: k, stride: s) },
        reference: { Ref.avgPool($0[0], k: k, stride: s ?? k) })
    }
    cases += [[2, 3, 7, 5], [1, 16, 1, 1]].map { x in
      OpCase(
        "globalAvgPool \(x)", inputs: { [$0.normal(x)] }, op: { try $0[0].globalAvgPool() },
        reference: { Ref.reduce($0[0], axes: [2, 3], keepDims: false, mean: true) })
    }
    return cases
  }

  // MARK: Losses

  static var losses: [OpCase] {
    var cases = [(7, 13), (1, 31), (64, 16)].map { rows, classes in
      OpCase(
        "softmaxCrossEntropy [\(rows),\(classes)]", differentiable: [0],
        inputs: { [$0.normal([rows, classes], std: 2), $0.labels(rows, classes: classes)] },
        op: { try $0[0].softmaxCrossEntropy(labels: $0[1]) },
        reference: { Ref.softmaxCrossEntropy($0[0], $0[1]) })
    }
    cases.append(
      OpCase(
        "softmaxProbabilities [7,13]", differentiable: [],
        inputs: { [$0.normal([7, 13], std: 2)] },
        op: { try $0[0].softmaxProbabilities() }, reference: { Ref.softmax($0[0]) }))
    cases += [[13, 7], [1]].map { shape in
      OpCase(
        "mse \(shape)", inputs: { [$0.normal(shape), $0.normal(shape)] },
        op: { try $0[0].mse($0[1]) }, reference: { Ref.mse($0[0], $0[1]) })
    }
    return cases
  }

  // MARK: Dropout (gradient and cross-backend only: its mask has no backend-free reference)

  static var dropout: [OpCase] {
    [(0.3, [13, 7]), (0.5, [2, 3, 4, 4])].map { p, shape in
      OpCase(
        "dropout p \(p) \(shape)", inputs: { [$0.normal(shape)] },
        op: { try $0[0].dropout(p: p, seed: 0xD1CE) }, reference: nil)
    }
  }
}
