/// How many times a model's solver evaluated its function in the most recent pass: the vector
/// field of an ODE (NFE) or the map of a fixed-point search (its iterations), forward and, once
/// gradients have been computed, backward. What the training metrics call NFE.
public struct FunctionEvaluations: Sendable, Equatable {
  public var forward: Int
  public var backward: Int

  public init(forward: Int, backward: Int) {
    self.forward = forward
    self.backward = backward
  }
}

extension ODEStatistics {
  public var evaluations: FunctionEvaluations {
    FunctionEvaluations(forward: forwardEvaluations, backward: backwardEvaluations)
  }
}

extension EquilibriumStatistics {
  public var evaluations: FunctionEvaluations {
    FunctionEvaluations(forward: forwardIterations, backward: backwardIterations)
  }
}
