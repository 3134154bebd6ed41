import DiffEqCore

/// Stochastic depth (Huang et al. 2016) with the linear decay rule: in training, block i of L
/// (0-based) is dropped with death rate d_i = i/(L − 1)·(1 − p_L), and a kept branch is scaled by
/// 1/(1 − d_i), so that its expectation is the evaluation network's unscaled branch.
///
/// Whether block i is dropped at training step s is a function of (seed, s, i) alone: a run and
/// its resume, which replays the same steps, drop the same blocks.
public struct StochasticDepth: Sendable, Equatable {
  /// p_L, the last block's survival probability, in (0, 1]; 1 disables dropping.
  public let survival: Double
  public let seed: UInt64

  /// Throws unless `survival` lies in (0, 1].
  public init(survival: Double, seed: UInt64) throws {
    guard survival > 0, survival <= 1 else {
      throw TensorError.invalidArgument(
        op: "stochastic depth", reason: "survival \(survival) is not in (0, 1]")
    }
    self.survival = survival
    self.seed = seed
  }

  /// d_i for block i of `blocks`.
  public func deathRate(block i: Int, of blocks: Int) -> Double {
    blocks <= 1 ? 0 : Double(i) / Double(blocks - 1) * (1 - survival)
  }

  /// Which of `blocks` blocks training step `step` drops.
  public func dropped(blocks: Int, step: UInt64) -> [Bool] {
    var rng = RandomState(seed: seed ^ Self.mix(step &+ 0x5D0E_11A7))
    return (0..<blocks).map { i in
      let u = rng.nextUniform()
      return u < deathRate(block: i, of: blocks)
    }
  }

  /// The multiplier of block i's branch: in training 0 when dropped, else 1/(1 − d_i); 1 in
  /// evaluation.
  public func scale(block i: Int, of blocks: Int, dropped: Bool, training: Bool) -> Double {
    guard training else { return 1 }
    return dropped ? 0 : 1 / (1 - deathRate(block: i, of: blocks))
  }

  /// SplitMix64's finaliser: consecutive steps give unrelated generator seeds.
  static func mix(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
