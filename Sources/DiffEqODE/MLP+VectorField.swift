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
