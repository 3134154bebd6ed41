import Kernels

/// One step of a gated recurrent unit, PyTorch's `GRUCell` (gates in the order r, z, n, weights
/// [3H, in] and [3H, H], initialised U(±1/√H)): for x [batch, in] and h [batch, H],
///
///   r  = σ(x·W_irᵀ + b_ir + h·W_hrᵀ + b_hr)          (reset gate)
///   z  = σ(x·W_izᵀ + b_iz + h·W_hzᵀ + b_hz)          (update gate)
///   n  = tanh(x·W_inᵀ + b_in + r ⊙ (h·W_hnᵀ + b_hn))  (candidate)
///   h′ = (1 − z) ⊙ n + z ⊙ h.
///
/// Composed of recorded ops (two `Tensor.linear`s, slices, σ, tanh, element-wise products), so its
/// gradients with respect to x, h and every parameter come from the tape.
public final class GRUCell: Module {
  public let inputSize: Int
  public let hiddenSize: Int
  /// [W_ir; W_iz; W_in], [3H, in].
  public let weightIH: Parameter
  /// [W_hr; W_hz; W_hn], [3H, H].
  public let weightHH: Parameter
  public let biasIH: Parameter
  public let biasHH: Parameter

  public init(
    inputSize: Int, hiddenSize: Int, dtype: DType = .float32, rng: inout RandomState,
    on backend: any Backend
  ) throws {
    guard inputSize > 0, hiddenSize > 0 else {
      throw TensorError.invalidArgument(
        op: "GRUCell", reason: "input size \(inputSize) and hidden size \(hiddenSize) must be > 0")
    }
    self.inputSize = inputSize
    self.hiddenSize = hiddenSize
    let bound = 1 / Double(hiddenSize).squareRoot()
    func draw(_ shape: [Int]) throws -> Parameter {
      Parameter(
        try .uniform(shape, low: -bound, high: bound, dtype: dtype, rng: &rng, on: backend))
    }
    weightIH = try draw([3 * hiddenSize, inputSize])
    weightHH = try draw([3 * hiddenSize, hiddenSize])
    biasIH = try draw([3 * hiddenSize])
    biasHH = try draw([3 * hiddenSize])
    super.init()
  }

  /// h′ for input x [batch, inputSize] and state h [batch, hiddenSize].
  public func callAsFunction(_ x: Tensor, _ h: Tensor) throws -> Tensor {
    guard x.rank == 2, x.shape[1] == inputSize, h.rank == 2, h.shape[1] == hiddenSize,
      x.shape[0] == h.shape[0]
    else {
      throw TensorError.shapeMismatch(op: "GRUCell", lhs: x.shape, rhs: h.shape)
    }
    let width = hiddenSize
    let gi = try x.linear(weight: weightIH.value, bias: biasIH.value)
    let gh = try h.linear(weight: weightHH.value, bias: biasHH.value)
    // Gate k's columns of a [batch, 3H] pre-activation.
    func gate(_ g: Tensor, _ k: Int) throws -> Tensor {
      try g.slice(axis: 1, (k * width)..<((k + 1) * width))
    }
    let r = try (gate(gi, 0) + gate(gh, 0)).sigmoid()
    let z = try (gate(gi, 1) + gate(gh, 1)).sigmoid()
    let n = try (gate(gi, 2) + r * gate(gh, 2)).tanh()
    // (1 − z)·n + z·h = n + z·(h − n): one product fewer.
    return try n + z * (h - n)
  }
}
