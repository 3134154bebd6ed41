import DiffEqCore

extension MLP {
  /// The MLP as an autonomous vector field dy/dt = MLP(y), whose adjoint uses the MLP's
  /// tape-free `vectorJacobian(at:cotangent:)`.
  public var vectorField: VectorField {
    VectorField(
      parameters: self, { [unowned self] _, y in try self(y) },
      vectorJacobian: { [unowned self] _, y, a in try self.vectorJacobian(at: y, cotangent: a) })
  }
}

extension MLP {
  /// The MLP as an autonomous field f(z) = MLP(z) with its Jacobian's trace (a continuous
  /// normalizing flow's dynamics), by `trace(at:probes:)` and its tape-free VJP.
  public var divergenceField: DivergenceField {
    DivergenceField(
      parameters: self,
      evaluate: { [unowned self] _, z, probes in try self.trace(at: z, probes: probes) },
      vectorJacobian: { [unowned self] _, z, probes, a, b in
        try self.traceVectorJacobian(at: z, probes: probes, cotangent: a, traceCotangent: b)
      })
  }
}
