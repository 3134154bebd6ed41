import Kernels

/// A tensor slot owned by a module. Trainable parameters receive gradients and optimiser updates;
/// non-trainable ones (running statistics) are saved in checkpoints but never differentiated.
public final class Parameter {
  public var value: Tensor
  public let trainable: Bool

  public init(_ value: Tensor, trainable: Bool = true) {
    self.value = value
    self.trainable = trainable
  }
}

/// The base class of layers and models.
///
/// Parameters and submodules are discovered by reflection over stored properties (of types
/// `Parameter`, `Module`, their optionals and arrays), so a subclass only declares them. Names are
/// the property paths, `conv1.weight` or `blocks.3.norm.gamma`, and serve as checkpoint keys.
///
/// A module's structure is fixed once it is first used: declare parameters and submodules with
/// `let` (their values change; the objects do not). Reflection runs once and is cached, because
/// the adjoint asks for the parameter list at every function evaluation.
open class Module {
  /// Training mode (dropout active, batch statistics); switch with `train(_:)`.
  public private(set) var isTraining = true
  private var cachedMembers: [(String, AnyObject)]?
  private var cachedParameters: [(name: String, parameter: Parameter)]?
  private var cachedTrainable: [(name: String, parameter: Parameter)]?

  public init() {}

  /// Direct submodules with their property names, in declaration order.
  public func children() -> [(name: String, module: Module)] {
    members().compactMap { name, value in (value as? Module).map { (name, $0) } }
  }

  /// This module (named "") and every module below it, parents before children, each with its
  /// dotted path: the prefix of its parameters' names.
  public func namedModules() -> [(name: String, module: Module)] {
    [("", self)]
      + children().flatMap { child in
        child.module.namedModules().map {
          ($0.name.isEmpty ? child.name : "\(child.name).\($0.name)", $0.module)
        }
      }
  }

  /// Every parameter in this module and below, in a fixed order, with its dotted name.
  public func namedParameters() -> [(name: String, parameter: Parameter)] {
    if let cachedParameters { return cachedParameters }
    var out: [(String, Parameter)] = []
    for (name, value) in members() {
      if let p = value as? Parameter {
        out.append((name, p))
      } else if let m = value as? Module {
        out += m.namedParameters().map { ("\(name).\($0.name)", $0.parameter) }
      }
    }
    cachedParameters = out
    return out
  }

  /// The trainable parameters, in `namedParameters()` order.
  public func trainableParameters() -> [(name: String, parameter: Parameter)] {
    if let cachedTrainable { return cachedTrainable }
    let trainable = namedParameters().filter { $0.parameter.trainable }
    cachedTrainable = trainable
    return trainable
  }

  /// The number of trainable scalars.
  public var parameterCount: Int {
    trainableParameters().reduce(0) { $0 + $1.parameter.value.count }
  }

  /// Sets training mode here and in every submodule.
  public func train(_ on: Bool = true) {
    isTraining = on
    for (_, m) in children() { m.train(on) }
  }

  /// Stored properties that are parameters or modules (arrays flattened with their index), from
  /// the most derived class up.
  private func members() -> [(String, AnyObject)] {
    if let cachedMembers { return cachedMembers }
    var out: [(String, AnyObject)] = []
    var mirror: Mirror? = Mirror(reflecting: self)
    var levels: [Mirror] = []
    while let m = mirror {
      levels.append(m)
      mirror = m.superclassMirror
    }
    for m in levels.reversed() {
      for child in m.children {
        guard let label = child.label else { continue }
        if let p = child.value as? Parameter {
          out.append((label, p))
        } else if let mod = child.value as? Module {
          out.append((label, mod))
        } else if let arr = child.value as? [Module] {
          for (i, mod) in arr.enumerated() { out.append(("\(label).\(i)", mod)) }
        } else if let arr = child.value as? [Parameter] {
          for (i, p) in arr.enumerated() { out.append(("\(label).\(i)", p)) }
        }
      }
    }
    cachedMembers = out
    return out
  }
}

/// A module mapping one tensor to one tensor.
public protocol UnaryLayer: Module {
  func callAsFunction(_ x: Tensor) throws -> Tensor
}

/// Runs `body` with `module`'s trainable parameters set to `values` (in `trainableParameters()`
/// order), then restores exactly the values they had, also when `body` throws: a computation
/// nested in another differentiated one must hand back that computation's tracked parameters.
///
/// The one place where parameters are swapped: `vjp` swaps in tracked leaves, the ODE layer
/// detached values (a forward solve that records nothing) or a solve's saved values (its adjoint).
/// A nil module has no parameters and takes no values.
public func withParameters<R>(
  of module: Module?, setTo values: [Tensor], _ body: () throws -> R
) rethrows -> R {
  let parameters = module?.trainableParameters() ?? []
  precondition(
    parameters.count == values.count,
    "withParameters: \(values.count) values for \(parameters.count) trainable parameters")
  let saved = parameters.map { $0.parameter.value }
  for (p, v) in zip(parameters, values) { p.parameter.value = v }
  defer { for (p, v) in zip(parameters, saved) { p.parameter.value = v } }
  return try body()
}

/// The value of `f`, which reads `model`'s parameters, and its gradient with respect to each
/// trainable parameter, keyed by parameter name (what an `Optimizer` takes).
public func valueAndGrad(_ model: Module, _ f: () throws -> Tensor) throws -> (
  Tensor, [String: Tensor]
) {
  let (value, _, grads) = try vjp(model, at: [], cotangent: nil) { _ in try f() }
  let names = model.trainableParameters().map(\.name)
  return (value, Dictionary(uniqueKeysWithValues: zip(names, grads)))
}

/// The value of `f(xs)` and the vector-Jacobian products `cotangentᵀ·∂f/∂xs` and
/// `cotangentᵀ·∂f/∂θ` for `model`'s trainable parameters θ (in `trainableParameters()` order), in
/// one backward pass. A nil cotangent means ones (for a scalar f, the gradient).
public func vjp(
  _ model: Module, at xs: [Tensor], cotangent: Tensor?, _ f: ([Tensor]) throws -> Tensor
) throws -> (Tensor, inputs: [Tensor], parameters: [Tensor]) {
  let (ys, gx, gp) = try vjp(model, at: xs, cotangents: cotangent.map { [$0] }) { try [f($0)] }
  return (ys[0], gx, gp)
}

/// `vjp` for a function with several outputs: Σ_k cotangentsₖᵀ·∂fₖ/∂(xs, θ), the parameter part
/// in `trainableParameters()` order (empty for a nil model). Nil cotangents mean ones for every
/// output.
public func vjp(
  _ model: Module?, at xs: [Tensor], cotangents: [Tensor]?, _ f: ([Tensor]) throws -> [Tensor]
) throws -> ([Tensor], inputs: [Tensor], parameters: [Tensor]) {
  let params = model?.trainableParameters() ?? []
  // One array of leaves, the inputs then the parameters, which stand in for the parameters'
  // values while f runs.
  var leaves: [Tensor] = []
  leaves.reserveCapacity(xs.count + params.count)
  for x in xs { leaves.append(x.trackingGradients()) }
  for p in params { leaves.append(p.parameter.value.trackingGradients()) }
  let ys = try withParameters(of: model, setTo: Array(leaves[xs.count...])) {
    try f(Array(leaves[..<xs.count]))
  }
  let seeds =
    try cotangents ?? ys.map { try Tensor.ones($0.shape, dtype: $0.dtype, on: $0.backend) }
  guard seeds.count == ys.count else {
    throw TensorError.invalidArgument(
      op: "vjp", reason: "\(seeds.count) cotangents for \(ys.count) outputs")
  }
  var grads = try backpropagate(ys, seeds: seeds, to: leaves)
  let parameterGrads = Array(grads[xs.count...])
  grads.removeSubrange(xs.count...)
  return (ys.map(\.detached), grads, parameterGrads)
}
