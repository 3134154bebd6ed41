import DiffEqNet
import NumericTestSupport
import XCTest

/// The LM-ResNet (Lu et al., ICML 2018) and stochastic depth: a stage against a hand
/// computation, the gradients of k_n and of the branch by float64 finite differences on every
/// backend, the drops' reproducibility and statistics, parameter counts and bad settings. (The
/// fused update itself is checked against its float64 reference in OpCases.lmUpdate.)
final class LMResNetTests: XCTestCase {
  func network(
    depth: Int = 20, lm: Bool = true, survival: Double = 1, seed: UInt64 = 3,
    dtype: DType = .float32, on backend: any Backend = sharedCPU
  ) throws -> CIFARResNet {
    var rng = RandomState(seed: seed)
    return try CIFARResNet(
      depth: depth, linearMultistep: lm, inputChannels: 1, classes: 10, survival: survival,
      dtype: dtype, seed: seed, rng: &rng, on: backend)
  }

  /// Stage 1 of lmresnet26 (a plain block, then three LM blocks) on random tensors against
  /// u₁ = u₀ + f₀(u₀), u₂ = (1 − k₁)u₁ + k₁u₁ + f₁(u₁), u₃ = (1 − k₂)u₂ + k₂u₁ + f₂(u₂),
  /// u₄ = (1 − k₃)u₃ + k₃u₂ + f₃(u₃), the combinations computed on the host in float64 from the
  /// branches f_n, tolerance 1e-5.
  func testStageMatchesHandComputation() throws {
    for backend in testBackends() {
      let net = try network(depth: 26, on: backend)
      net.train(false)
      var rng = RandomState(seed: 5)
      let u0 = try Tensor.normal([2, 16, 6, 6], rng: &rng, on: backend)
      let ks = try net.lmCoefficients()
      XCTAssertEqual(ks.count, 9)
      for k in ks { XCTAssert(k >= -0.1 && k <= 0, "k_n = \(k) drawn from U[−0.1, 0]") }
      let b = net.blocks
      let shape = u0.shape
      var states = [try u0.toDoubles()]
      states.append(zip(states[0], try b[0].branch(u0).toDoubles()).map { $0 + $1 })
      for n in 1...3 {
        let (u, previous, k) = (states[n], states[n == 1 ? 1 : n - 1], ks[n - 1])
        let f = try b[n].branch(Tensor(u, shape: shape, on: backend)).toDoubles()
        states.append((0..<u.count).map { i in (1 - k) * u[i] + k * previous[i] + f[i] })
      }
      let out = try net.blocks(u0, count: 4).toDoubles()
      let err = relativeError(out, states[4])
      XCTAssertLessThan(err, 1e-5, "stage 1 on \(backend.name): ‖out − hand‖/‖hand‖ = \(err)")
    }
  }

  /// ∂L/∂kappa (k = tanh(kappa)) and ∂L/∂θ of the branch (both convolutions, both batch norms'
  /// γ), and ∂L/∂u, ∂L/∂u_{n−1}, for L = Σ r·lmStep(u, previous, scale 0.8) in training mode, by
  /// central differences (h = 1e-6) in float64 on every backend that has it; tolerance 1e-6 on
  /// ‖vjp − fd‖/‖fd‖ over the checked entries.
  func testGradientsOfKAndBranchByFiniteDifferences() throws {
    for backend in testBackends() where backend.supports(.float64) {
      var rng = RandomState(seed: 17)
      let block = try PreActBlock(
        4, 4, stride: 1, linearMultistep: true, dtype: .float64, rng: &rng, on: backend)
      let shape = [3, 4, 5, 5]
      let u = try Tensor.normal(shape, dtype: .float64, rng: &rng, on: backend)
      let previous = try Tensor.normal(shape, dtype: .float64, rng: &rng, on: backend)
      let r = try Tensor.normal(shape, dtype: .float64, rng: &rng, on: backend)
      let loss = { (u: Tensor, p: Tensor) in
        try (block.lmStep(u, previous: p, scale: 0.8) * r).sum()
      }
      let (_, inputs, parameters) = try vjp(block, at: [u, previous], cotangent: nil) {
        try loss($0[0], $0[1])
      }
      let h = 1e-6
      /// The central difference of the loss along entry j of `value`, set through `set`.
      func difference(_ value: Tensor, _ j: Int, _ set: (Tensor) -> Void) throws -> Double {
        var x = try value.toDoubles()
        let x0 = x[j]
        x[j] = x0 + h
        set(try Tensor(x, shape: value.shape, dtype: .float64, on: backend))
        let plus = try loss(u, previous).item()
        x[j] = x0 - h
        set(try Tensor(x, shape: value.shape, dtype: .float64, on: backend))
        let minus = try loss(u, previous).item()
        set(value)
        return (plus - minus) / (2 * h)
      }
      for ((name, p), g) in zip(block.trainableParameters(), parameters) {
        let value = p.value
        let grad = try g.toDoubles()
        let entries = Array(Set((0..<min(value.count, 6)).map { ($0 * 37) % value.count }))
        let fd = try entries.map { j in try difference(value, j) { p.value = $0 } }
        let err = relativeError(entries.map { grad[$0] }, fd)
        XCTAssertLessThan(err, 1e-6, "\(name) on \(backend.name): \(err)")
      }
      // The state inputs, through a closure that rebuilds the loss with one of them perturbed.
      for (i, x) in [u, previous].enumerated() {
        let grad = try inputs[i].toDoubles()
        var values = try x.toDoubles()
        let fd = try [0, 17, 44].map { j -> Double in
          let x0 = values[j]
          values[j] = x0 + h
          let xp = try Tensor(values, shape: shape, dtype: .float64, on: backend)
          values[j] = x0 - h
          let xm = try Tensor(values, shape: shape, dtype: .float64, on: backend)
          values[j] = x0
          let lp = try (i == 0 ? loss(xp, previous) : loss(u, xp)).item()
          let lm = try (i == 0 ? loss(xm, previous) : loss(u, xm)).item()
          return (lp - lm) / (2 * h)
        }
        let err = relativeError([0, 17, 44].map { grad[$0] }, fd)
        XCTAssertLessThan(err, 1e-6, "input \(i) on \(backend.name): \(err)")
      }
    }
  }

  func testFixedSeedDropsTheSameBlocksAcrossRuns() throws {
    let a = try StochasticDepth(survival: 0.5, seed: 42)
    let b = try StochasticDepth(survival: 0.5, seed: 42)
    let other = try StochasticDepth(survival: 0.5, seed: 43)
    var differs = false
    for step in UInt64(0)..<200 {
      XCTAssertEqual(a.dropped(blocks: 9, step: step), b.dropped(blocks: 9, step: step))
      differs = differs || a.dropped(blocks: 9, step: step) != other.dropped(blocks: 9, step: step)
      XCTAssertFalse(a.dropped(blocks: 9, step: step)[0], "block 0 has death rate 0")
    }
    XCTAssertTrue(differs, "another seed drops other blocks")
    // Two networks from one seed give identical training outputs step after step, and one that
    // starts at step 3 (a resume) gives step 3's output.
    var rng = RandomState(seed: 8)
    let x = try Tensor.normal([4, 1, 8, 8], rng: &rng, on: sharedCPU)
    let n1 = try network(depth: 14, survival: 0.5)
    let n2 = try network(depth: 14, survival: 0.5)
    var outputs: [[Float]] = []
    for _ in 0..<4 {
      let y = try n1(x).toFloats()
      XCTAssertEqual(y, try n2(x).toFloats())
      outputs.append(y)
    }
    XCTAssertNotEqual(Set(outputs.map { $0.description }).count, 1, "the drops vary by step")
    let resumed = try network(depth: 14, survival: 0.5)
    resumed.step = 3
    XCTAssertEqual(try resumed(x).toFloats(), outputs[3])
  }

  /// With p_L = 1 nothing is dropped and every scale is exactly 1: the training-mode output
  /// equals, bit for bit, the blocks applied by hand without stochastic depth.
  func testSurvivalOneIsTheDeterministicNetwork() throws {
    let sd = try StochasticDepth(survival: 1, seed: 9)
    for step in UInt64(0)..<50 {
      XCTAssertEqual(sd.dropped(blocks: 9, step: step), [Bool](repeating: false, count: 9))
    }
    let net = try network(survival: 1)
    var rng = RandomState(seed: 2)
    let x = try Tensor.normal([3, 1, 8, 8], rng: &rng, on: sharedCPU)
    let y = try net(x).toFloats()
    var u = try net.stem(x)
    var previous = u
    for block in net.blocks {
      if block.kappa != nil {
        let next = try block.lmStep(u, previous: previous)
        previous = u
        u = next
      } else {
        u = try block.residual(u)
        previous = u
      }
    }
    let expected = try net.classifier(net.headNorm(u).relu().globalAvgPool()).toFloats()
    XCTAssertEqual(y, expected)
  }

  /// For a linear branch f(u) = A·u, the training outputs (1 − k)u + k·p + s·f with
  /// s ∈ {0, 1/(1 − d)} average over N = 4000 steps to the evaluation output (s = 1): each
  /// element within 5σ, σ = √(d/(1 − d)/N)·|f|, since Var(s) = d/(1 − d). Checked for the last
  /// of 9 blocks (d = 0.5) and a middle one, and the drop frequency within 5σ of d.
  func testTrainingMeanOverDropsIsTheEvaluationOutput() throws {
    let sd = try StochasticDepth(survival: 0.5, seed: 77)
    var rng = RandomState(seed: 4)
    let u = try Tensor.normal([2, 5], rng: &rng, on: sharedCPU)
    let p = try Tensor.normal([2, 5], rng: &rng, on: sharedCPU)
    let a = try Tensor.normal([5, 5], rng: &rng, on: sharedCPU)
    let k = try Tensor([-0.07], shape: [1], on: sharedCPU)
    let f = try u.matmul(a)
    let n = 4000
    for block in [4, 8] {
      let d = sd.deathRate(block: block, of: 9)
      var sum = [Double](repeating: 0, count: u.count)
      var drops = 0
      for step in 0..<n {
        let dropped = sd.dropped(blocks: 9, step: UInt64(step))[block]
        drops += dropped ? 1 : 0
        let s = sd.scale(block: block, of: 9, dropped: dropped, training: true)
        let y = try u.lmUpdate(previous: p, branch: s == 0 ? nil : f, k: k, scale: s)
        for (i, v) in try y.toDoubles().enumerated() { sum[i] += v }
      }
      let sigmaDrop = (d * (1 - d) / Double(n)).squareRoot()
      XCTAssertEqual(Double(drops) / Double(n), d, accuracy: 5 * sigmaDrop, "block \(block)")
      let eval = try u.lmUpdate(
        previous: p, branch: f, k: k,
        scale: sd.scale(block: block, of: 9, dropped: false, training: false)
      ).toDoubles()
      let fv = try f.toDoubles()
      let sigma = (d / (1 - d) / Double(n)).squareRoot()
      for i in 0..<eval.count {
        XCTAssertEqual(
          sum[i] / Double(n), eval[i], accuracy: 5 * sigma * abs(fv[i]) + 1e-5,
          "block \(block) element \(i)")
      }
    }
  }

  func testParameterCountsDifferByTheLMCoefficients() throws {
    for depth in [20, 32, 44, 56, 110] {
      let plain = try network(depth: depth, lm: false)
      let lm = try network(depth: depth, lm: true)
      let n = (depth - 2) / 6
      XCTAssertEqual(lm.parameterCount - plain.parameterCount, 3 * (n - 1), "depth \(depth)")
      XCTAssertEqual(try lm.lmCoefficients().count, 3 * (n - 1))
      XCTAssertEqual(try plain.lmCoefficients().count, 0)
    }
    // The zoo builds them by name, the older `resnet` still builds its GroupNorm blocks, and a
    // CIFAR ResNet's checkpoint keys include the running statistics and the k_n's pre-images.
    var c = ModelZoo.Configuration()
    c.width = 8
    c.residualBlocks = 1
    let old = try ModelZoo.make(.resnet, c, on: sharedCPU)
    XCTAssertNil(old.network)
    XCTAssertEqual(old.features.count, 1)
    let zoo = try ModelZoo.make(.lmresnet20, c, on: sharedCPU)
    let names = zoo.namedParameters().map(\.name)
    XCTAssert(names.contains("network.blocks.1.kappa"))
    XCTAssert(names.contains("network.blocks.0.norm1.runningMean"))
    XCTAssert(names.contains("network.headNorm.runningVariance"))
    XCTAssertFalse(zoo.trainableParameters().map(\.name).contains("network.headNorm.runningMean"))
  }

  /// The ResNeXt variants: bottleneck blocks whose 3×3 convolution is grouped by the
  /// cardinality, 9n + 2 = 29 layers, the LM version 3(n − 1) = 6 k_n more; a training step's
  /// loss is finite and every trainable parameter gets a gradient.
  func testResNeXtUsesGroupedConvolutionsAndTrains() throws {
    var c = ModelZoo.Configuration()
    c.cardinality = 4
    c.groupWidth = 2
    c.survival = 0.5
    let plain = try ModelZoo.make(.resnext, c, on: sharedCPU)
    let lm = try ModelZoo.make(.lmresnext, c, on: sharedCPU)
    let net = try XCTUnwrap(lm.network)
    XCTAssertEqual(net.blocks.count, 9)
    XCTAssertEqual(lm.parameterCount - plain.parameterCount, 6)
    XCTAssertEqual(net.blocks[4].conv2.groups, 4)
    XCTAssertEqual(net.blocks[4].conv2.weight.value.shape, [16, 4, 3, 3], "8·2 channels, 4 groups")
    var rng = RandomState(seed: 1)
    let x = try Tensor.normal([4, 1, 12, 12], rng: &rng, on: sharedCPU)
    let labels = try Tensor([0, 1, 2, 3], shape: [4], on: sharedCPU)
    let (loss, grads) = try valueAndGrad(lm) { try lm(x).softmaxCrossEntropy(labels: labels) }
    XCTAssert(try loss.item().isFinite)
    XCTAssertEqual(grads.count, lm.trainableParameters().count)
    var bad = ModelZoo.Configuration()
    bad.cardinality = 0
    expectTensorError("cardinality 0") { _ = try ModelZoo.make(.lmresnext, bad, on: sharedCPU) }
    expectTensorError("conv groups") {
      _ = try Conv2d(6, 4, kernelSize: 3, groups: 4, rng: &rng, on: sharedCPU)
    }
  }

  func testBadDepthOrSurvivalIsAClearError() throws {
    for depth in [0, 7, 14 + 1, 21, 100] {
      let e = expectTensorError("depth \(depth)") { _ = try network(depth: depth) }
      XCTAssert(
        "\(e.map { "\($0)" } ?? "")".contains("6n + 2"), "depth \(depth): \(String(describing: e))")
    }
    for p in [0, -0.5, 1.5, .nan] {
      let e = expectTensorError("survival \(p)") { _ = try network(survival: p) }
      XCTAssert("\(e.map { "\($0)" } ?? "")".contains("(0, 1]"), "survival \(p)")
      var c = TrainingConfiguration()
      c.survival = p
      XCTAssertThrowsError(try c.validate(), "survival \(p) in a configuration")
    }
    XCTAssertThrowsError(try ModelArchitecture(parsing: "resnet21")) { error in
      XCTAssert("\(error)".contains("resnet20"), "the message lists the known models: \(error)")
    }
    XCTAssertEqual(try ModelArchitecture(parsing: "lmresnet110"), .lmresnet110)
  }
}
