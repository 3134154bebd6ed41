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
      // d/dlogits = (softmax − onehot) / N, scaled by the scalar cotangent.
      let onehot = try Tensor.oneHot(lab, classes: classes)
      return [try (probs - onehot) * (g / Double(rows))]
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

  /// [N, K] with ones at (i, labels[i]), built on the host (labels are small).
  static func oneHot(_ labels: Tensor, classes: Int) throws -> Tensor {
    let l = try labels.toDoubles()
    var v = [Double](repeating: 0, count: l.count * classes)
    for (i, c) in l.enumerated() where c >= 0 && Int(c) < classes { v[i * classes + Int(c)] = 1 }
    return try Tensor(v, shape: [l.count, classes], dtype: labels.dtype, on: labels.backend)
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
