/// One recorded operation: the nodes of its differentiable inputs and the rule that maps the
/// cotangent of its output to cotangents of those inputs (the vector-Jacobian product).
///
/// The graph is built only when some input is tracked (a leaf from `trackingGradients()` or the
/// result of an op on one), so inference records nothing. Backward rules capture *detached* copies
/// of the tensors they need, so running them records nothing either. The graph lives as long as
/// the tensors that reference it; `backward` drops each rule once used, freeing its intermediates.
final class GradNode {
  private(set) var inputs: [GradNode?]
  var rule: ((Tensor) throws -> [Tensor?])?

  init(inputs: [GradNode?], rule: ((Tensor) throws -> [Tensor?])?) {
    self.inputs = inputs
    self.rule = rule
  }

  /// Frees the graph below iteratively: the default recursive release of a long chain (an ODE
  /// solve records tens of thousands of ops) overflows the stack. Each node this one owns alone
  /// hands its inputs to a work list before it dies, so no deinit recurses.
  deinit {
    rule = nil  // rules may capture tracked tensors; drop them while `inputs` keeps the nodes alive
    var pending = inputs.compactMap { $0 }
    inputs = []
    while var node = pending.popLast() {
      guard isKnownUniquelyReferenced(&node) else { continue }
      node.rule = nil
      pending += node.inputs.compactMap { $0 }
      node.inputs = []
    }
  }
}

extension Tensor {
  /// This tensor as a new leaf of a differentiated computation.
  public func trackingGradients() -> Tensor {
    var t = self
    t.node = GradNode(inputs: [], rule: nil)
    return t
  }

  /// Attaches a backward rule to `self` when any of `inputs` is tracked.
  func recorded(from inputs: [Tensor], _ rule: @escaping (Tensor) throws -> [Tensor?]) -> Tensor {
    guard inputs.contains(where: { $0.node != nil }) else { return self }
    var t = self
    t.node = GradNode(inputs: inputs.map(\.node), rule: rule)
    return t
  }
}

/// Reverse-mode accumulation: the cotangents of `leaves` given the cotangents `seeds` of
/// `outputs` (Σ_k seedsₖᵀ·∂outputsₖ/∂leaves).
///
/// Leaves the outputs do not depend on get zero gradients. Rules are consumed: a graph is
/// differentiated once.
func backpropagate(_ outputs: [Tensor], seeds: [Tensor], to leaves: [Tensor]) throws -> [Tensor] {
  var grads: [ObjectIdentifier: Tensor] = [:]
  var roots: [GradNode] = []
  for (output, seed) in zip(outputs, seeds) {
    guard output.shape == seed.shape else {
      throw TensorError.shapeMismatch(op: "backward seed", lhs: output.shape, rhs: seed.shape)
    }
    try output.checkCompatible(seed, "backward seed")
    guard let root = output.node else { continue }
    let id = ObjectIdentifier(root)
    grads[id] = try grads[id].map { try $0 + seed.detached } ?? seed.detached
    roots.append(root)
  }
  // Gradients of interior nodes are dropped as soon as they are propagated; leaves keep theirs.
  let leafIDs = Set(leaves.compactMap { $0.node.map(ObjectIdentifier.init) })
  for node in topologicalOrder(from: roots).reversed() {
    let id = ObjectIdentifier(node)
    guard let g = grads[id], let rule = node.rule else { continue }
    if !leafIDs.contains(id) { grads[id] = nil }
    let inputGrads = try rule(g)
    node.rule = nil
    for (parent, pg) in zip(node.inputs, inputGrads) {
      guard let parent, let pg else { continue }
      let pid = ObjectIdentifier(parent)
      if let existing = grads[pid] { grads[pid] = try existing + pg } else { grads[pid] = pg }
    }
  }
  return try leaves.map { leaf in
    guard let node = leaf.node else {
      throw TensorError.noGradient("a requested input is not tracked (call trackingGradients())")
    }
    return try grads[ObjectIdentifier(node)] ?? leaf.detached.zerosLike()
  }
}

/// Nodes reachable from `roots`, each after all of its inputs (iterative: graphs of long ODE
/// solves are deeper than the call stack).
private func topologicalOrder(from roots: [GradNode]) -> [GradNode] {
  var order: [GradNode] = []
  var visited = Set<ObjectIdentifier>()
  var stack: [(GradNode, Bool)] = roots.reversed().map { ($0, false) }
  while let (node, expanded) = stack.popLast() {
    if expanded {
      order.append(node)
      continue
    }
    let id = ObjectIdentifier(node)
    if visited.contains(id) { continue }
    visited.insert(id)
    stack.append((node, true))
    for case let input? in node.inputs where !visited.contains(ObjectIdentifier(input)) {
      stack.append((input, false))
    }
  }
  return order
}

/// The value of `f` at `xs` and its gradient with respect to each of them; `f` must return a
/// one-element tensor.
public func valueAndGrad(at xs: [Tensor], _ f: ([Tensor]) throws -> Tensor) throws -> (
  Tensor, [Tensor]
) {
  let leaves = xs.map { $0.trackingGradients() }
  let y = try f(leaves)
  guard y.count == 1 else {
    throw TensorError.invalidShape(
      op: "valueAndGrad", shape: y.shape, reason: "the function must return a scalar")
  }
  let seed = try Tensor.ones(y.shape, dtype: y.dtype, on: y.backend)
  let grads = try backpropagate([y], seeds: [seed], to: leaves)
  return (y.detached, grads)
}

/// The value of `f` at `xs` and the vector-Jacobian product `cotangentᵀ · ∂f/∂xs` for every input.
public func vjp(
  at xs: [Tensor], cotangent: Tensor, _ f: ([Tensor]) throws -> Tensor
) throws -> (Tensor, [Tensor]) {
  let leaves = xs.map { $0.trackingGradients() }
  let y = try f(leaves)
  let grads = try backpropagate([y], seeds: [cotangent], to: leaves)
  return (y.detached, grads)
}
