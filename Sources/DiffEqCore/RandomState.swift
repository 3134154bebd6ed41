import Foundation
import Kernels

/// A seedable pseudo-random generator (xoshiro256**), with its state exposed so that checkpoints
/// can save and restore it and a resumed run draws the same numbers.
public struct RandomState: RandomNumberGenerator, Sendable, Equatable, Codable {
  public var state: [UInt64]

  public init(seed: UInt64) {
    // SplitMix64 spreads the seed over the four words, so nearby seeds give unrelated streams.
    var z = seed
    state = (0..<4).map { _ in
      z &+= 0x9E37_79B9_7F4A_7C15
      var x = z
      x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
      x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
      return x ^ (x >> 31)
    }
  }

  public mutating func next() -> UInt64 {
    let result = rotl(state[1] &* 5, 7) &* 9
    let t = state[1] << 17
    state[2] ^= state[0]
    state[3] ^= state[1]
    state[1] ^= state[2]
    state[0] ^= state[3]
    state[2] ^= t
    state[3] = rotl(state[3], 45)
    return result
  }

  /// Uniform in [0, 1) with 53 random bits.
  public mutating func nextUniform() -> Double {
    Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
  }

  /// Standard normal by the Box–Muller transform.
  public mutating func nextNormal() -> Double {
    let u1 = 1 - nextUniform()  // (0, 1], so the log is finite
    let u2 = nextUniform()
    return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
  }

  /// A 32-bit seed for device-side random streams (dropout).
  public mutating func nextSeed() -> UInt32 { UInt32(truncatingIfNeeded: next() >> 32) }

  private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
