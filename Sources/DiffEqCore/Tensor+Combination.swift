import Kernels

extension Tensor {
  /// Σ_k coefficients[k] · terms[k] for tensors of one shape, in a single backend launch: the
  /// stage inputs, solutions and multistep updates of the ODE solvers.
  public static func linearCombination(_ terms: [Tensor], _ coefficients: [Double]) throws
    -> Tensor
  {
    guard let first = terms.first, terms.count == coefficients.count else {
      throw TensorError.invalidArgument(
        op: "linearCombination",
        reason: "\(terms.count) terms for \(coefficients.count) coefficients")
    }
    // Each term's fields are read in place: `for t in terms`, or passing terms[i] whole to
    // `checkCompatible`, copies the tensor (four references), and the stage combinations of a
    // solve over a small state are dominated by such bookkeeping.
    let buffers = try terms.withUnsafeBufferPointer { terms in
      var buffers: [DeviceBuffer] = []
      buffers.reserveCapacity(terms.count)
      for i in terms.indices {
        if terms[i].backend !== first.backend || terms[i].dtype != first.dtype {
          try first.checkCompatible(terms[i], "linearCombination")
        }
        guard terms[i].shape == first.shape else {
          throw TensorError.shapeMismatch(
            op: "linearCombination", lhs: first.shape, rhs: terms[i].shape)
        }
        buffers.append(terms[i].buffer)
      }
      return buffers
    }
    let out = try first.empty(first.shape)
    try first.backend.linearCombination(
      buffers, coefficients: coefficients, into: out.buffer, count: first.count,
      dtype: first.dtype)
    return out.recorded(from: terms) { g in
      try coefficients.map { c in c == 1 ? g : try g.affine(scale: c) }
    }
  }

  /// Σ (err / (atol + rtol·max(|y0|, |y1|)))² over all elements: the adaptive solvers' error
  /// norm before the mean and square root. Not differentiable (step-size control never is).
  public static func scaledErrorSquaredSum(
    error: Tensor, y0: Tensor, y1: Tensor, atol: Double, rtol: Double
  ) throws -> Double {
    try scaledErrorSquaredSums([(error, y0, y1)], atol: atol, rtol: rtol)[0]
  }

  /// `scaledErrorSquaredSum` of each (error, y0, y1), read back in one transfer: a norm over
  /// several components, or several norms, at the cost of one host synchronisation. The terms
  /// share one backend and element type.
  public static func scaledErrorSquaredSums(
    _ terms: [(error: Tensor, y0: Tensor, y1: Tensor)], atol: Double, rtol: Double
  ) throws -> [Double] {
    guard let first = terms.first?.error else { return [] }
    for (error, y0, y1) in terms {
      try first.checkCompatible(error, "error norm")
      try error.checkCompatible(y0, "error norm")
      try error.checkCompatible(y1, "error norm")
      guard error.shape == y0.shape, y0.shape == y1.shape else {
        throw TensorError.shapeMismatch(op: "error norm", lhs: error.shape, rhs: y0.shape)
      }
    }
    return try first.backend.scaledErrorSquaredSums(
      terms.map {
        ScaledErrorTerm(
          error: $0.error.buffer, y0: $0.y0.buffer, y1: $0.y1.buffer, count: $0.error.count)
      }, atol: atol, rtol: rtol, dtype: first.dtype)
  }
}
