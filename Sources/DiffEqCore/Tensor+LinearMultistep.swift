import Kernels

extension Tensor {
  /// The linear two-step update of an LM-ResNet block (Lu et al., ICML 2018):
  /// (1 − k)·self + k·previous + scale·branch, with k a one-element tensor (a trainable
  /// parameter, read on the device) and no branch term when `branch` is nil (a block dropped by
  /// stochastic depth). One backend launch forward (`Backend.lmUpdate`), one backward for the
  /// cotangents of self, previous, branch and k (dk = Σ dy·(previous − self), a reduction).
  public func lmUpdate(previous: Tensor, branch: Tensor?, k: Tensor, scale: Double = 1) throws
    -> Tensor
  {
    try checkCompatible(previous, "lmUpdate")
    try checkCompatible(k, "lmUpdate k")
    guard previous.shape == shape else {
      throw TensorError.shapeMismatch(op: "lmUpdate", lhs: shape, rhs: previous.shape)
    }
    guard k.count == 1 else {
      throw TensorError.shapeMismatch(op: "lmUpdate k", lhs: [1], rhs: k.shape)
    }
    if let branch {
      try checkCompatible(branch, "lmUpdate branch")
      guard branch.shape == shape else {
        throw TensorError.shapeMismatch(op: "lmUpdate branch", lhs: shape, rhs: branch.shape)
      }
    }
    guard scale.isFinite else {
      throw TensorError.invalidArgument(op: "lmUpdate", reason: "scale \(scale) is not finite")
    }
    let out = try empty(shape)
    try backend.lmUpdate(
      u: buffer, previous: previous.buffer, branch: branch?.buffer, k: k.buffer, scale: scale,
      y: out.buffer, count: count, dtype: dtype)
    let (u, p, kd) = (detached, previous.detached, k.detached)
    let needs = (isTracked, previous.isTracked, branch?.isTracked == true, k.isTracked)
    let inputs = [self, previous, k] + (branch.map { [$0] } ?? [])
    let kShape = k.shape
    return out.recorded(from: inputs) { dy in
      let du = needs.0 ? try u.empty(u.shape) : nil
      let dp = needs.1 ? try u.empty(u.shape) : nil
      // A branch with scale 1 takes dy itself.
      let passThrough = needs.2 && scale == 1
      let df = needs.2 && !passThrough ? try u.empty(u.shape) : nil
      let dk = needs.3 ? try u.empty(kShape) : nil
      if du != nil || dp != nil || df != nil || dk != nil {
        try u.backend.lmUpdateGrad(
          u: u.buffer, previous: p.buffer, k: kd.buffer, dy: dy.buffer, du: du?.buffer,
          dPrevious: dp?.buffer, dBranch: df?.buffer, dk: dk?.buffer, scale: scale,
          count: u.count, dtype: u.dtype)
      }
      var grads: [Tensor?] = [du, dp, dk]
      if inputs.count == 4 { grads.append(passThrough ? dy : df) }
      return grads
    }
  }
}
