import Kernels

extension Tensor {
  /// The mean over rows of −log softmax(logits)[label] for logits [N, K] and labels [N] holding
  /// class indices.
  public func softmaxCrossEntropy(labels: Tensor) throws -> Tensor {
    try checkCompatible(labels, "softmaxCrossEntropy")
    guard rank == 2, labels.shape == [shape[0]] else {
      throw TensorError.shapeMismatch(op: "softmaxCrossEntropy", lhs: shape, rhs: labels.shape)
    }
    let (rows, classes) = (shape[0], shape[1])
    let probs = try empty(shape)
    let losses = try empty([rows])
    try backend.softmaxCrossEntropy(
      logits: buffer, labels: labels.buffer, probs: probs.buffer, losses: losses.buffer,
      rows: rows, classes: classes, dtype: dtype)
    let loss = try losses.mean()
    let lab = labels.detached
    return loss.detached.recorded(from: self) { g in
      // d/dlogits = (softmax − onehot) / N, scaled by the scalar cotangent, on the device.
      let dlogits = try probs.empty(probs.shape)
      try probs.backend.softmaxCrossEntropyGrad(
        probs: probs.buffer, labels: lab.buffer, cotangent: g.buffer, dlogits: dlogits.buffer,
        rows: rows, classes: classes, dtype: probs.dtype)
      return [dlogits]
    }
  }

  /// Softmax probabilities along the last axis of a matrix (not differentiable).
  public func softmaxProbabilities() throws -> Tensor {
    guard rank == 2 else {
      throw TensorError.invalidShape(op: "softmax", shape: shape, reason: "expected [N, K]")
    }
    let zeros = try Tensor.zeros([shape[0]], dtype: dtype, on: backend)
    let probs = try empty(shape)
    let losses = try empty([shape[0]])
    try backend.softmaxCrossEntropy(
      logits: buffer, labels: zeros.buffer, probs: probs.buffer, losses: losses.buffer,
      rows: shape[0], classes: shape[1], dtype: dtype)
    return probs
  }

  /// The mean of (self − target)² over all elements.
  public func mse(_ target: Tensor) throws -> Tensor {
    guard shape == target.shape else {
      throw TensorError.shapeMismatch(op: "mse", lhs: shape, rhs: target.shape)
    }
    return try (self - target).square().mean()
  }

  /// Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1 − p).
  /// The mask comes from a counter-based hash of `seed`, identical on every backend.
  public func dropout(p: Double, seed: UInt32) throws -> Tensor {
    guard p >= 0, p < 1 else {
      throw TensorError.invalidArgument(op: "dropout", reason: "p = \(p) is not in [0, 1)")
    }
    if p == 0 { return self }
    let mask = try empty(shape)
    try backend.dropoutMask(mask.buffer, count: count, p: p, seed: seed, dtype: dtype)
    return try self * mask
  }
}
