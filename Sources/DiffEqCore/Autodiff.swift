import Kernels
import Synchronization

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
  /// Scratch of the `backpropagate` call under way: the cotangent accumulated so far, and marks
  /// (that call's traversal id) for visited nodes and requested leaves. Kept on the node rather
  /// than in hashed side tables because small graphs are dominated by that bookkeeping.
  fileprivate var cotangent: Tensor?
  fileprivate var visitedIn: UInt64 = 0
  fileprivate var requestedIn: UInt64 = 0

  init(inputs: [GradNode?], rule: ((Tensor) throws -> [Tensor?])?) {
    self.inputs = inputs
    self.rule = rule
  }

  /// Frees the graph below iteratively: the default recursive release of a long chain (an ODE
  /// solve records tens of thousands of ops) overflows the stack. Each node this one owns alone
  /// hands its inputs to a work list before it dies, so no deinit recurses.
  deinit {
    rule = nil  // rules may capture tracked tensors; drop them while `inputs` keeps the nodes alive
    // Leaves have no inputs and cannot recurse, so only interior inputs are queued: a node over
    // leaves alone (most of a small graph) frees without allocating a work list.
    var pending: [GradNode] = []
    for case let node? in inputs where !node.inputs.isEmpty { pending.append(node) }
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

  /// Attaches a backward rule to `self` when any of `inputs` is tracked. The rule is an
  /// autoclosure so that an untracked op (inference, a forward solve, a hand-derived VJP) never
  /// allocates the closure's captured state.
  package func recorded(
    from inputs: [Tensor], _ rule: @autoclosure () -> (Tensor) throws -> [Tensor?]
  ) -> Tensor {
    guard inputs.contains(where: { $0.node != nil }) else { return self }
    return with(GradNode(inputs: inputs.map(\.node), rule: rule()))
  }

  /// `recorded(from:_:)` for one input, without building an array when it is untracked.
  package func recorded(from a: Tensor, _ rule: @autoclosure () -> (Tensor) throws -> [Tensor?])
    -> Tensor
  {
    a.node == nil ? self : with(GradNode(inputs: [a.node], rule: rule()))
  }

  /// `recorded(from:_:)` for two inputs, without building an array when both are untracked.
  package func recorded(
    from a: Tensor, _ b: Tensor, _ rule: @autoclosure () -> (Tensor) throws -> [Tensor?]
  ) -> Tensor {
    a.node == nil && b.node == nil ? self : with(GradNode(inputs: [a.node, b.node], rule: rule()))
  }

  /// `recorded(from:_:)` for two inputs and an optional third (a layer's bias).
  package func recorded(
    from a: Tensor, _ b: Tensor, _ c: Tensor?,
    _ rule: @autoclosure () -> (Tensor) throws -> [Tensor?]
  ) -> Tensor {
    guard let c else { return recorded(from: a, b, rule()) }
    guard a.node != nil || b.node != nil || c.node != nil else { return self }
    return with(GradNode(inputs: [a.node, b.node, c.node], rule: rule()))
  }

  /// `self` with `node` attached; kept out of line so that the untracked paths above stay small.
  @inline(never)
  private func with(_ node: GradNode) -> Tensor {
    var t = self
    t.node = node
    return t
  }
}

/// Ids of `backpropagate` calls, so marks left on nodes by earlier calls never match.
private let traversals = Atomic<UInt64>(0)

/// Reverse-mode accumulation: the cotangents of `leaves` given the cotangents `seeds` of
/// `outputs` (Σ_k seedsₖᵀ·∂outputsₖ/∂leaves).
///
/// Leaves the outputs do not depend on get zero gradients. Rules are consumed, so that
/// intermediates are freed as soon as possible, unless `retainingGraph` (the graph can then be
/// differentiated again, e.g. for another seed); a graph is differentiated by one thread at a time.
func backpropagate(
  _ outputs: [Tensor], seeds: [Tensor], to leaves: [Tensor], retainingGraph: Bool = false
) throws -> [Tensor] {
  let traversal = traversals.add(1, ordering: .relaxed).newValue
  var roots: [GradNode] = []
  var touched: [GradNode] = []
  roots.reserveCapacity(outputs.count)
  touched.reserveCapacity(16)  // one allocation instead of several growths on small graphs
  defer { for node in touched { node.cotangent = nil } }
  for (output, seed) in zip(outputs, seeds) {
    guard output.shape == seed.shape else {
      throw TensorError.shapeMismatch(op: "backward seed", lhs: output.shape, rhs: seed.shape)
    }
    try output.checkCompatible(seed, "backward seed")
    guard let root = output.node else { continue }
    root.cotangent = try root.cotangent.map { try $0 + seed.detached } ?? seed.detached
    roots.append(root)
    touched.append(root)
  }
  for leaf in leaves { leaf.node?.requestedIn = traversal }
  // Cotangents of interior nodes are dropped as soon as they are propagated; leaves keep theirs.
  for node in topologicalOrder(from: roots, traversal: traversal).reversed() {
    guard let g = node.cotangent, let rule = node.rule else { continue }
    if node.requestedIn != traversal { node.cotangent = nil }
    let inputGrads = try rule(g)
    if !retainingGraph { node.rule = nil }
    for (parent, pg) in zip(node.inputs, inputGrads) {
      guard let parent, let pg else { continue }
      if let existing = parent.cotangent {
        parent.cotangent = try existing + pg
      } else {
        parent.cotangent = pg
        touched.append(parent)
      }
    }
  }
  return try leaves.map { leaf in
    guard let node = leaf.node else {
      throw TensorError.noGradient("a requested input is not tracked (call trackingGradients())")
    }
    return try node.cotangent ?? leaf.detached.zerosLike()
  }
}

/// Nodes reachable from `roots`, each after all of its inputs (iterative: graphs of long ODE
/// solves are deeper than the call stack).
private func topologicalOrder(from roots: [GradNode], traversal: UInt64) -> [GradNode] {
  var order: [GradNode] = []
  order.reserveCapacity(16)
  var stack: [(GradNode, Bool)] = []
  stack.reserveCapacity(16)
  for root in roots.reversed() { stack.append((root, false)) }
  while let (node, expanded) = stack.popLast() {
    if expanded {
      order.append(node)
      continue
    }
    if node.visitedIn == traversal { continue }
    node.visitedIn = traversal
    stack.append((node, true))
    for case let input? in node.inputs where input.visitedIn != traversal {
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

/// `f(x)` and its pullback u ↦ uᵀ·∂f/∂x, which can be applied to any number of cotangents: f is
/// recorded once, and its graph (one evaluation's intermediates) lives as long as the pullback.
/// For a linear solve by vector-Jacobian products (an implicit gradient's), where a `vjp` per
/// product would evaluate f again each time. The rules of f's ops must not depend on state that
/// changes between calls (none of the library's do).
public func pullback(at x: Tensor, _ f: (Tensor) throws -> Tensor) throws -> (
  value: Tensor, pullback: (Tensor) throws -> Tensor
) {
  let leaf = x.trackingGradients()
  let y = try f(leaf)
  return (
    y.detached,
    { u in try backpropagate([y], seeds: [u], to: [leaf], retainingGraph: true)[0] }
  )
}
