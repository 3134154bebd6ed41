import Kernels

/// What a continuous normalizing flow needs of an MLP f beyond its value: the trace of its
/// Jacobian J = ∂f/∂x, exactly or by Hutchinson's estimator, and the vector-Jacobian product of
/// both, all without a tape.
///
/// With probes ε [batch, d] the trace term is εᵀJε per row (Hutchinson: E[εᵀJε] = tr J when
/// E[εεᵀ] = I); without, it is tr J = Σₖ eₖᵀJeₖ over the d basis vectors, batched as d·batch
/// rows. Jε is propagated forward alongside the value (uᵢ = (uᵢ₋₁·Wᵢᵀ) ⊙ σ′(zᵢ)), so one pass
/// gives value and trace; the VJP runs that pass backward, which needs σ″ (tanh and softplus).
extension MLP {
  /// (value [batch, out], trace [batch, 1]) of the MLP at x, recorded: differentiate it on the
  /// tape, or use `traceVectorJacobian` for the same gradients without one.
  public func trace(at x: Tensor, probes: Tensor?) throws -> (value: Tensor, trace: Tensor) {
    let pass = try Self.tracePass(
      x, weights: layers.map { $0.weight.value }, biases: layers.map { $0.bias?.value },
      activation: activation, probes: probes)
    return (pass.value, pass.trace)
  }

  /// `trace(at:probes:)` of the MLP with the given weights [outᵢ, inᵢ] and biases, recorded.
  public static func trace(
    at x: Tensor, weights: [Tensor], biases: [Tensor?], activation: Activation, probes: Tensor?
  ) throws -> (value: Tensor, trace: Tensor) {
    let pass = try tracePass(
      x, weights: weights, biases: biases, activation: activation, probes: probes)
    return (pass.value, pass.trace)
  }

  /// The value and trace as `trace(at:probes:)`, and aᵀ·∂f/∂x + b·∂trace/∂x with the same for θ
  /// (`trainableParameters()` order), for cotangents a [batch, out] and b [batch, 1]; records
  /// nothing.
  public func traceVectorJacobian(
    at x: Tensor, probes: Tensor?, cotangent a: Tensor, traceCotangent b: Tensor
  ) throws -> (value: Tensor, trace: Tensor, input: Tensor, parameters: [Tensor]) {
    let weights = layers.map { $0.weight.value.detached }
    let biases = layers.map { $0.bias?.value.detached }
    let r = try Self.traceVectorJacobian(
      at: x, weights: weights, biases: biases, activation: activation, probes: probes,
      cotangent: a, traceCotangent: b)
    var grads: [Tensor] = []
    for i in layers.indices {
      grads.append(r.weights[i])
      if let db = r.biases[i] { grads.append(db) }
    }
    return (r.value, r.trace, r.input, grads)
  }

  /// The tape-free trace VJP of the MLP with the given weights [outᵢ, inᵢ] and biases (a layer
  /// whose weights are functions of other parameters, as FFJORD's ConcatSquash layer, chains
  /// these gradients into its own).
  public static func traceVectorJacobian(
    at x: Tensor, weights: [Tensor], biases: [Tensor?], activation: Activation, probes: Tensor?,
    cotangent a: Tensor, traceCotangent b: Tensor
  ) throws -> (
    value: Tensor, trace: Tensor, input: Tensor, weights: [Tensor], biases: [Tensor?]
  ) {
    let pass = try tracePass(
      x.detached, weights: weights.map(\.detached), biases: biases.map { $0?.detached },
      activation: activation, probes: probes?.detached)
    guard a.shape == pass.value.shape, b.shape == pass.trace.shape else {
      throw TensorError.shapeMismatch(
        op: "MLP.traceVectorJacobian cotangents", lhs: pass.value.shape + pass.trace.shape,
        rhs: a.shape + b.shape)
    }
    let k = pass.copies
    let last = weights.count - 1
    var hBar = a.detached
    // The trace is Σ (tangent out ⊙ probe): its cotangent reaches the last tangent as b·probe.
    var uBar = try pass.probes * repeated(b.detached, k)
    var dW: [Tensor] = Array(repeating: hBar, count: weights.count)
    var dB: [Tensor?] = Array(repeating: nil, count: weights.count)
    for i in stride(from: last, through: 0, by: -1) {
      let (zBar, qBar): (Tensor, Tensor)
      if i == last {
        (zBar, qBar) = (hBar, uBar)
      } else {
        let h = pass.hidden[i]
        qBar = try uBar * repeated(h.d1, k)
        zBar = try hBar * h.d1 + folded(uBar * h.tangent * repeated(h.d2, k), k)
      }
      let w = weights[i].detached
      let primal = try Tensor.linearBackward(
        zBar, input: pass.inputs[i], weight: w, bias: biases[i] != nil)
      dB[i] = primal.db
      hBar = primal.dx
      if i > 0 {
        let tangent = try Tensor.linearBackward(
          qBar, input: pass.tangents[i], weight: w, bias: false)
        dW[i] = try primal.dw + tangent.dw
        uBar = tangent.dx
      } else {
        // The probes are constants: the first layer's tangent needs no input cotangent.
        dW[i] = try primal.dw + weightGradient(qBar, input: pass.tangents[0], like: w)
      }
    }
    return (pass.value, pass.trace, hBar, dW, dB)
  }

  /// A hidden layer's saved values: σ′ and σ″ at its pre-activation [batch, width] and its
  /// tangent pre-activation [copies·batch, width].
  struct HiddenTrace {
    var d1: Tensor
    var d2: Tensor
    var tangent: Tensor
  }

  struct TracePass {
    var value: Tensor
    var trace: Tensor
    /// The probes as tangent rows [copies·batch, d] (the basis vectors for the exact trace).
    var probes: Tensor
    var copies: Int
    var inputs: [Tensor]
    var tangents: [Tensor]
    var hidden: [HiddenTrace]
  }

  /// The forward pass of value and trace, from differentiable ops (so that, on tracked inputs,
  /// the tape records it), keeping what the VJP needs.
  static func tracePass(
    _ x: Tensor, weights: [Tensor], biases: [Tensor?], activation: Activation, probes: Tensor?
  ) throws -> TracePass {
    guard x.rank == 2, let first = weights.first, first.rank == 2, x.shape[1] == first.shape[1],
      let output = weights.last?.shape[0], output == x.shape[1]
    else {
      throw TensorError.shapeMismatch(
        op: "MLP.trace (a square field)", lhs: x.shape, rhs: weights.first?.shape ?? [])
    }
    let (batch, d) = (x.shape[0], x.shape[1])
    let probeRows: Tensor
    let copies: Int
    if let probes {
      guard probes.shape == x.shape else {
        throw TensorError.shapeMismatch(op: "MLP.trace probes", lhs: x.shape, rhs: probes.shape)
      }
      try x.checkCompatible(probes, "MLP.trace")
      probeRows = probes
      copies = 1
    } else {
      var basis = [Double](repeating: 0, count: d * batch * d)
      for k in 0..<d { for r in 0..<batch { basis[(k * batch + r) * d + k] = 1 } }
      probeRows = try Tensor(basis, shape: [d * batch, d], dtype: x.dtype, on: x.backend)
      copies = d
    }
    var h = x
    var u = probeRows
    var inputs: [Tensor] = []
    var tangents: [Tensor] = []
    var hidden: [HiddenTrace] = []
    for (i, w) in weights.enumerated() {
      inputs.append(h)
      tangents.append(u)
      let z = try h.linear(weight: w, bias: biases[i])
      let q = try u.linear(weight: w, bias: nil)
      if i == weights.count - 1 {
        h = z
        u = q
      } else {
        let (s, d1, d2) = try derivatives(z, activation)
        hidden.append(HiddenTrace(d1: d1, d2: d2, tangent: q))
        h = s
        u = try q * repeated(d1, copies)
      }
    }
    let trace = try folded((u * probeRows).sum(axes: [1], keepDims: true), copies)
    return TracePass(
      value: h, trace: trace, probes: probeRows, copies: copies, inputs: inputs,
      tangents: tangents, hidden: hidden)
  }

  /// σ(z), σ′(z) and σ″(z).
  static func derivatives(_ z: Tensor, _ activation: Activation) throws -> (
    Tensor, Tensor, Tensor
  ) {
    switch activation {
    case .tanh:
      let s = try z.tanh()
      let d1 = try 1 - s.square()
      return (s, d1, try (s * d1) * -2.0)
    case .softplus:
      let g = try z.sigmoid()
      return (try z.softplus(), g, try g * (1 - g))
    default:
      throw TensorError.invalidArgument(
        op: "MLP.trace", reason: "the trace's gradient needs tanh or softplus, not \(activation)")
    }
  }

  /// Gᵀ·x for G [batch, out] and x [batch, in]: `linear`'s weight gradient alone.
  static func weightGradient(_ g: Tensor, input x: Tensor, like w: Tensor) throws -> Tensor {
    let dw = try x.empty(w.shape)
    try x.backend.gemm(
      g.buffer, x.buffer, dw.buffer,
      GEMMShape(m: w.shape[0], n: w.shape[1], k: x.shape[0], transA: true), dtype: x.dtype)
    return dw
  }

  /// t [batch, n] stacked k times along the rows.
  static func repeated(_ t: Tensor, _ k: Int) throws -> Tensor {
    k == 1 ? t : try Tensor.concat(Array(repeating: t, count: k), axis: 0)
  }

  /// The sum of the k row blocks of t [k·batch, n].
  static func folded(_ t: Tensor, _ k: Int) throws -> Tensor {
    guard k > 1 else { return t }
    return try t.reshaped([k, t.shape[0] / k, t.shape[1]]).sum(axes: [0])
  }
}
