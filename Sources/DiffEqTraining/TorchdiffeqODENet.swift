import DiffEqCore
import DiffEqData
import DiffEqModels
import Foundation

/// The MNIST ODE-Net of torchdiffeq's `examples/odenet_mnist.py` as a state_dict: our parameter
/// names mapped to its `nn.Sequential` of the downsampling layers (0–6), the ODE block (7) and the
/// head (8–12), so weights move between the two in both directions.
///
/// The two compute the same function when (a) our GroupNorms have torchdiffeq's
/// min(32, width) groups, (b) the ODE is solved the same way (torchdiffeq's `rk4` is our `rk38`),
/// and (c) the inputs are scaled the same way. torchdiffeq's example feeds raw [0, 1] pixels;
/// ours may standardise them. The export folds our normalisation into the first convolution,
/// exactly, because it has no padding: W′ = W / s, b′ = b − Σ W·m / s. The import sets
/// `normalization` to `.identity`.
public enum TorchdiffeqODENet {
  /// Our parameter name → torchdiffeq's state_dict key, for every parameter of an `odenet` or
  /// `rknet` `ImageClassifier`. Nil for any other name.
  public static func stateDictKey(_ name: String) -> String? {
    let layers = [
      ("stem0.", "0."), ("stemNorm0.", "1."), ("stem1.", "3."), ("stemNorm1.", "4."),
      ("stem2.", "6."), ("features.0.function.", "7.odefunc."), ("headNorm.", "8."),
      ("classifier.", "12."),
    ]
    guard let (ours, theirs) = layers.first(where: { name.hasPrefix($0.0) }) else { return nil }
    var rest = String(name.dropFirst(ours.count))
    // ConcatConv2d holds its convolution as `conv`; torchdiffeq's as `_layer`.
    for conv in ["conv1", "conv2"] where rest.hasPrefix("\(conv).conv.") {
      rest = "\(conv)._layer." + rest.dropFirst("\(conv).conv.".count)
    }
    let leaf = ["gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias"]
    guard let dot = rest.lastIndex(of: "."),
      let mapped = leaf[String(rest[rest.index(after: dot)...])]
    else {
      return leaf[rest].map { theirs + $0 }
    }
    return theirs + rest[...dot] + mapped
  }

  /// Throws unless `model` is an ODE-Net that torchdiffeq's example can compute: `odenet` or
  /// `rknet`, with min(32, width) groups in every GroupNorm.
  static func checkCompatible(_ model: ImageClassifier, file: String) throws {
    guard model.architecture == .odenet || model.architecture == .rknet else {
      throw CheckpointError.invalidArgument(
        "\(file): a \(model.architecture) has no counterpart in torchdiffeq's odenet_mnist")
    }
    guard let stemNorm0 = model.stemNorm0, let stemNorm1 = model.stemNorm1,
      let headNorm = model.headNorm
    else {
      throw CheckpointError.invalidArgument("\(file): the model has no ODE-Net stem")
    }
    let width = headNorm.gamma.value.count
    let groups = [stemNorm0, stemNorm1, headNorm].map(\.groups)
    guard groups.allSatisfy({ $0 == min(32, width) }) else {
      throw CheckpointError.invalidArgument(
        "\(file): this model normalises in \(groups[0]) groups, torchdiffeq's odenet_mnist in "
          + "min(32, width) = \(min(32, width)); only models with those groups (width 64, or "
          + "trained with --norm-groups \(min(32, width))) compute the same function there")
    }
  }

  /// The state_dict of `model`, whose inputs were scaled by `normalization`, for torchdiffeq's
  /// model fed raw [0, 1] pixels.
  public static func stateDict(
    of model: ImageClassifier, normalization: Normalization, file: String = "checkpoint"
  ) throws -> SafeTensorsFile {
    try checkCompatible(model, file: file)
    var out = SafeTensorsFile(metadata: ["source": "DiffEqNet", "inputs": "raw [0, 1] pixels"])
    for (name, parameter) in model.namedParameters() {
      guard let key = stateDictKey(name) else {
        throw CheckpointError.invalidArgument("\(file): no torchdiffeq name for '\(name)'")
      }
      out.tensors[key] = try HostTensor(parameter.value)
    }
    guard let stem0 = model.stem0 else {
      throw CheckpointError.invalidArgument("\(file): the model has no ODE-Net stem")
    }
    // Fold the normalisation into the first convolution (no padding: exact).
    let w = try stem0.weight.value.toDoubles()
    var b = try stem0.bias?.value.toDoubles() ?? []
    let shape = stem0.weight.value.shape
    let (channels, taps) = (shape[1], shape[2] * shape[3])
    let mean = (0..<channels).map { normalization.mean[normalization.mean.count == 1 ? 0 : $0] }
    let std = (0..<channels).map { normalization.std[normalization.std.count == 1 ? 0 : $0] }
    var folded = w
    for o in 0..<shape[0] {
      for c in 0..<channels {
        for k in 0..<taps {
          let i = (o * channels + c) * taps + k
          folded[i] = w[i] / std[c]
          if !b.isEmpty { b[o] -= w[i] * mean[c] / std[c] }
        }
      }
    }
    let dtype = stem0.weight.value.dtype
    out.tensors["0.weight"] = try HostTensor(folded, shape: shape, dtype: dtype)
    if !b.isEmpty { out.tensors["0.bias"] = try HostTensor(b, shape: [shape[0]], dtype: dtype) }
    return out
  }

  /// The settings of the model a torchdiffeq state_dict describes (width, input channels and
  /// classes read off its shapes): an `odenet` with torchdiffeq's groups, fed raw [0, 1] pixels.
  public static func configuration(
    of stateDict: SafeTensorsFile, base: TrainingConfiguration = TrainingConfiguration(),
    file: String = "state_dict"
  ) throws -> (configuration: TrainingConfiguration, inputChannels: Int, classes: Int) {
    guard let stem = stateDict.tensors["0.weight"], stem.shape.count == 4,
      let head = stateDict.tensors["12.weight"], head.shape.count == 2
    else {
      throw CheckpointError.invalidArgument(
        "\(file): not a state_dict of torchdiffeq's odenet_mnist (no 0.weight [W, C, 3, 3] "
          + "and 12.weight [classes, W])")
    }
    var c = base
    c.model = .odenet
    c.width = stem.shape[0]
    c.normGroups = min(32, c.width)
    c.normalization = .identity
    return (c, stem.shape[1], head.shape[0])
  }

  /// Sets `model`'s parameters from a torchdiffeq state_dict. Every parameter must be present
  /// with its shape and element type, and every tensor of the state_dict must be used (as
  /// `load_state_dict(strict=True)` demands); nothing changes unless all of that holds.
  public static func load(_ stateDict: SafeTensorsFile, into model: ImageClassifier, file: String)
    throws
  {
    try checkCompatible(model, file: file)
    var renamed = SafeTensorsFile(metadata: stateDict.metadata)
    var used = Set<String>()
    for (name, _) in model.namedParameters() {
      guard let key = stateDictKey(name), let tensor = stateDict.tensors[key] else {
        throw CheckpointError.missingTensors(file: file, names: [stateDictKey(name) ?? name])
      }
      renamed.tensors[name] = tensor
      used.insert(key)
    }
    let unused = Set(stateDict.tensors.keys).subtracting(used).sorted()
    guard unused.isEmpty else {
      throw CheckpointError.unexpectedTensors(file: file, names: unused)
    }
    try Checkpoint.load(renamed, file: file, into: model)
  }
}
