import Kernels

/// Updates a module's trainable parameters in place from their gradients.
///
/// Parameters are the one place where tensor storage is written in place: an update overwrites
/// the parameter buffer (after the step no recorded graph refers to it), which keeps optimiser
/// steps allocation-free.
public protocol Optimizer: AnyObject {
  /// The step size used by the next `update`; schedules set it between steps.
  var learningRate: Double { get set }
  /// The number of updates applied so far.
  var step: Int { get }
  /// Applies one update; `gradients` is keyed by parameter name as `valueAndGrad` returns it.
  func update(_ model: Module, gradients: [String: Tensor]) throws
  /// Named state tensors for checkpoints (e.g. `exp_avg.conv1.weight`).
  func stateTensors() -> [String: Tensor]
  /// Restores state saved by `stateTensors()` and the step count.
  func loadState(_ tensors: [String: Tensor], step: Int) throws
}

/// Shared mechanics: per-parameter state, created zeroed on first use, and the flat update.
///
/// With `flattensParameters` (the default) the first update moves the model's trainable
/// parameters into one flat buffer (`FlatParameterStorage`) and keeps the state in buffers of the
/// same layout. An update then packs the gradients into a flat buffer (one launch per 16 on
/// OpenCL) and updates everything in one more launch. The arithmetic per element is the same as
/// the per-parameter path, so both give identical results. A step with a parameter that has no
/// gradient takes the per-parameter path, on the same state.
public class StatefulOptimizer {
  public var learningRate: Double
  public private(set) var step = 0
  /// Whether updates go through flat parameter storage (see the type's documentation); false
  /// updates each parameter in its own buffer, one launch each.
  public var flattensParameters = true
  /// The state by parameter name; views of `flat`'s state buffers once the layout exists.
  var slots: [String: [Tensor]] = [:]
  let slotNames: [String]
  private var flat: FlatLayout?

  /// The flat storage of one model's parameters, with the state and gradient buffers of its
  /// layout.
  private struct FlatLayout {
    let storage: FlatParameterStorage
    let state: [DeviceBuffer]
    let gradients: DeviceBuffer
  }

  init(learningRate: Double, slotNames: [String]) {
    self.learningRate = learningRate
    self.slotNames = slotNames
  }

  func apply(
    _ model: Module, _ gradients: [String: Tensor], _ makeStep: (Int) -> OptimizerStep
  ) throws {
    step += 1
    let kind = makeStep(step)
    let parameters = model.trainableParameters()
    for (name, p) in parameters {
      guard let g = gradients[name] else { continue }
      let value = p.value
      guard g.shape == value.shape else {
        throw TensorError.shapeMismatch(
          op: "optimizer update of \(name)", lhs: value.shape, rhs: g.shape)
      }
      try value.checkCompatible(g, "optimizer update of \(name)")
    }
    if flattensParameters, let layout = try flatLayout(parameters) {
      let storage = layout.storage
      if parameters.allSatisfy({ gradients[$0.name] != nil }) {
        try storage.pack(parameters.map { gradients[$0.name]! }, into: layout.gradients)
        try storage.backend.optimizerStep(
          kind, param: storage.values, grad: layout.gradients, state1: layout.state[0],
          state2: layout.state.count > 1 ? layout.state[1] : nil, count: storage.count,
          dtype: storage.dtype)
        return
      }
    }
    for (name, p) in parameters {
      guard let g = gradients[name] else { continue }
      let value = p.value
      if slots[name] == nil { slots[name] = try slotNames.map { _ in try value.zerosLike() } }
      let s = slots[name]!
      try value.backend.optimizerStep(
        kind, param: value.buffer, grad: g.buffer, state1: s[0].buffer,
        state2: s.count > 1 ? s[1].buffer : nil, count: value.count, dtype: value.dtype)
    }
  }

  /// The flat layout of `parameters`, bound to them: made on first use (moving any state
  /// already held into it), and made again for another model's parameters. Nil when the
  /// parameters cannot share one buffer.
  private func flatLayout(_ parameters: [(name: String, parameter: Parameter)]) throws
    -> FlatLayout?
  {
    if let flat, flat.storage.parameters.elementsEqual(parameters.map(\.parameter), by: ===) {
      try flat.storage.bind()
      return flat
    }
    guard let storage = try FlatParameterStorage(parameters.map(\.parameter)) else { return nil }
    let names = parameters.map(\.name)
    let state = try slotNames.map { _ in try storage.makeBuffer() }
    for (slot, buffer) in state.enumerated() {
      let held = names.indices.filter { slots[names[$0]] != nil }
      for k in held {
        let t = slots[names[k]]![slot]
        guard t.shape == storage.shapes[k], t.dtype == storage.dtype,
          t.backend === storage.backend
        else {
          throw TensorError.invalidArgument(
            op: "optimizer state",
            reason: "\(slotNames[slot]).\(names[k]) is \(t.shape) \(t.dtype), the parameter "
              + "\(storage.shapes[k]) \(storage.dtype)")
        }
      }
      try storage.backend.pack(
        held.map { slots[names[$0]]![slot].buffer }, counts: held.map { storage.counts[$0] },
        offsets: held.map { storage.offsets[$0] }, into: buffer, dtype: storage.dtype)
    }
    let views = try state.map { try storage.tensors(viewing: $0) }
    slots = [:]
    for (k, name) in names.enumerated() { slots[name] = views.map { $0[k] } }
    let layout = FlatLayout(storage: storage, state: state, gradients: try storage.makeBuffer())
    flat = layout
    return layout
  }

  public func stateTensors() -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for (name, s) in slots { for (slot, t) in zip(slotNames, s) { out["\(slot).\(name)"] = t } }
    return out
  }

  /// The largest step count `loadState` accepts: far beyond any run (2⁴⁰ updates), and far
  /// from the overflow of the next `step += 1`.
  public static let maxStep = 1 << 40

  public func loadState(_ tensors: [String: Tensor], step: Int) throws {
    guard (0...Self.maxStep).contains(step) else {
      throw TensorError.invalidArgument(
        op: "optimizer state", reason: "step \(step) is outside 0...\(Self.maxStep)")
    }
    var loaded: [String: [Tensor?]] = [:]
    for (key, t) in tensors {
      guard let slot = slotNames.firstIndex(where: { key.hasPrefix($0 + ".") }) else {
        throw TensorError.invalidArgument(op: "optimizer state", reason: "unknown entry \(key)")
      }
      let name = String(key.dropFirst(slotNames[slot].count + 1))
      loaded[name, default: Array(repeating: nil, count: slotNames.count)][slot] = t
    }
    flat = nil
    slots = try loaded.mapValues { s in
      try s.map { t in
        guard let t else {
          throw TensorError.invalidArgument(op: "optimizer state", reason: "missing a slot")
        }
        return t
      }
    }
    self.step = step
  }
}

/// Stochastic gradient descent with momentum, optional Nesterov momentum and L2 weight decay
/// (PyTorch's formulation, see `OptimizerStep.sgd`).
public final class SGD: StatefulOptimizer, Optimizer {
  public let momentum: Double
  public let nesterov: Bool
  public let weightDecay: Double

  public init(
    learningRate: Double, momentum: Double = 0, nesterov: Bool = false, weightDecay: Double = 0
  ) {
    self.momentum = momentum
    self.nesterov = nesterov
    self.weightDecay = weightDecay
    super.init(learningRate: learningRate, slotNames: ["momentum_buffer"])
  }

  public func update(_ model: Module, gradients: [String: Tensor]) throws {
    try apply(model, gradients) { _ in
      .sgd(lr: learningRate, momentum: momentum, nesterov: nesterov, weightDecay: weightDecay)
    }
  }
}

/// Adam with bias correction; `decoupled` gives AdamW (weight decay applied to the weights, not
/// added to the gradient).
public final class Adam: StatefulOptimizer, Optimizer {
  public let beta1: Double, beta2: Double, eps: Double, weightDecay: Double
  public let decoupled: Bool

  public init(
    learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8,
    weightDecay: Double = 0, decoupled: Bool = false
  ) {
    self.beta1 = beta1
    self.beta2 = beta2
    self.eps = eps
    self.weightDecay = weightDecay
    self.decoupled = decoupled
    super.init(learningRate: learningRate, slotNames: ["exp_avg", "exp_avg_sq"])
  }

  /// AdamW with PyTorch's default decay of 0.01.
  public static func adamW(learningRate: Double = 1e-3, weightDecay: Double = 1e-2) -> Adam {
    Adam(learningRate: learningRate, weightDecay: weightDecay, decoupled: true)
  }

  public func update(_ model: Module, gradients: [String: Tensor]) throws {
    try apply(model, gradients) { t in
      .adam(
        lr: learningRate, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay,
        decoupled: decoupled, step: t)
    }
  }
}

/// RMSprop (PyTorch's defaults: α = 0.99, ε = 1e-8), as torchdiffeq's ode_demo trains with.
public final class RMSprop: StatefulOptimizer, Optimizer {
  public let alpha: Double, eps: Double

  public init(learningRate: Double = 1e-2, alpha: Double = 0.99, eps: Double = 1e-8) {
    self.alpha = alpha
    self.eps = eps
    super.init(learningRate: learningRate, slotNames: ["square_avg"])
  }

  public func update(_ model: Module, gradients: [String: Tensor]) throws {
    try apply(model, gradients) { _ in .rmsprop(lr: learningRate, alpha: alpha, eps: eps) }
  }
}
