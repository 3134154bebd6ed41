import Foundation
import Kernels

/// The learning rate as a function of the optimiser step, with an optional linear warm-up.
public enum LearningRateSchedule: Equatable, Sendable {
  /// The base rate throughout.
  case constant
  /// The base rate multiplied by `gamma` every `every` steps.
  case step(every: Int, gamma: Double)
  /// Cosine annealing from the base rate to `minimum` over `totalSteps`.
  case cosine(totalSteps: Int, minimum: Double)

  /// The rate for step `t` (0-based) with `warmup` steps of linear increase from base/warmup.
  public func rate(base: Double, step t: Int, warmup: Int = 0) -> Double {
    if warmup > 0 && t < warmup { return base * Double(t + 1) / Double(warmup) }
    switch self {
    case .constant: return base
    case .step(let every, let gamma): return base * pow(gamma, Double(t / max(1, every)))
    case .cosine(let total, let minimum):
      let span = max(1, total - warmup)
      let progress = min(1, Double(t - warmup) / Double(span))
      return minimum + (base - minimum) * 0.5 * (1 + cos(Double.pi * progress))
    }
  }
}
