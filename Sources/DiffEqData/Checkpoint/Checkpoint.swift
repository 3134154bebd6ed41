import DiffEqCore
import Foundation

/// Saving and restoring a training run as one safetensors file.
///
/// Keys: every parameter of the model (trainable or not) under its dotted name from
/// `Module.namedParameters()`; every optimiser state tensor under `optimizer.` + its
/// `stateTensors()` name (e.g. `optimizer.exp_avg.conv1.weight`). Metadata: the caller's string
/// entries (model name, JSON config, epoch, RNG state as JSON, …) plus, when an optimiser is
/// saved, its step count under `optimizer.step`.
public enum Checkpoint {
  /// The prefix of optimiser state keys.
  public static let optimizerPrefix = "optimizer."
  /// The metadata key holding the optimiser's step count.
  public static let stepKey = "optimizer.step"

  /// Writes `model`'s parameters, `optimizer`'s state and `metadata` to `url`, atomically.
  public static func save(
    model: Module, optimizer: (any Optimizer)? = nil, metadata: [String: String] = [:],
    to url: URL
  ) throws {
    var file = SafeTensorsFile(metadata: metadata)
    for (name, parameter) in model.namedParameters() {
      guard file.tensors[name] == nil else {
        throw CheckpointError.invalidArgument("checkpoint: two parameters are named '\(name)'")
      }
      file.tensors[name] = try HostTensor(parameter.value)
    }
    if let optimizer {
      for (name, tensor) in optimizer.stateTensors() {
        let key = optimizerPrefix + name
        guard file.tensors[key] == nil else {
          throw CheckpointError.invalidArgument(
            "checkpoint: optimizer state '\(key)' collides with a parameter name")
        }
        file.tensors[key] = try HostTensor(tensor)
      }
      file.metadata[stepKey] = String(optimizer.step)
    }
    try file.write(to: url)
  }

  /// Restores `model`'s parameters (and `optimizer`'s state and step, if given) from `url` and
  /// returns the metadata.
  ///
  /// Every parameter must be present with its shape and element type, and every non-optimiser
  /// tensor must belong to a parameter; optimiser state must match the parameters it belongs to
  /// and `optimizer.step` must be present when an optimiser is given (without one, optimiser
  /// state in the file is ignored). Nothing is modified unless all of that holds.
  @discardableResult
  public static func load(from url: URL, into model: Module, optimizer: (any Optimizer)? = nil)
    throws -> [String: String]
  {
    try load(
      SafeTensorsFile.read(from: url), file: url.lastPathComponent, into: model,
      optimizer: optimizer)
  }

  /// `load(from:into:optimizer:)` for a file already read (`file` names it in errors).
  @discardableResult
  public static func load(
    _ contents: SafeTensorsFile, file: String, into model: Module,
    optimizer: (any Optimizer)? = nil
  ) throws -> [String: String] {
    let parameters = model.namedParameters()
    let byName = Dictionary(
      parameters.map { ($0.name, $0.parameter) }, uniquingKeysWith: { first, _ in first })

    let missing = parameters.map(\.name).filter { contents.tensors[$0] == nil }
    guard missing.isEmpty else {
      throw CheckpointError.missingTensors(file: file, names: missing)
    }
    let unexpected = contents.tensors.keys
      .filter { !$0.hasPrefix(optimizerPrefix) && byName[$0] == nil }.sorted()
    guard unexpected.isEmpty else {
      throw CheckpointError.unexpectedTensors(file: file, names: unexpected)
    }
    var values: [(Parameter, Tensor)] = []
    for (name, parameter) in parameters {
      let saved = contents.tensors[name]!
      try check(saved, against: parameter.value, name: name, file: file)
      values.append((parameter, try saved.tensor(on: parameter.value.backend)))
    }

    if let optimizer {
      guard let text = contents.metadata[stepKey] else {
        throw CheckpointError.invalidMetadata(
          file: file, key: stepKey, reason: "missing, so the file holds no optimizer state")
      }
      guard let step = Int(text), step >= 0 else {
        throw CheckpointError.invalidMetadata(
          file: file, key: stepKey, reason: "'\(text)' is not a step count")
      }
      var state: [String: Tensor] = [:]
      for (key, saved) in contents.tensors where key.hasPrefix(optimizerPrefix) {
        let name = String(key.dropFirst(optimizerPrefix.count))
        // State names are `<slot>.<parameter name>`, and slot names contain no dot.
        guard let dot = name.firstIndex(of: "."),
          let parameter = byName[String(name[name.index(after: dot)...])]
        else {
          throw CheckpointError.unexpectedTensors(file: file, names: [key])
        }
        try check(saved, against: parameter.value, name: key, file: file)
        state[name] = try saved.tensor(on: parameter.value.backend)
      }
      do {
        try optimizer.loadState(state, step: step)
      } catch {
        throw CheckpointError.mismatch(file: file, tensor: "optimizer state", reason: "\(error)")
      }
    }
    for (parameter, value) in values { parameter.value = value }
    return contents.metadata
  }

  /// `value` as compact JSON with sorted keys, for a metadata entry (a config, a `RandomState`).
  public static func json<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
  }

  /// The value stored as JSON under `key` in `metadata` (as returned by `load`); throws
  /// `CheckpointError.invalidMetadata` if it is missing or does not decode.
  public static func decode<T: Decodable>(
    _ type: T.Type, key: String, in metadata: [String: String], file: String = "checkpoint"
  ) throws -> T {
    guard let text = metadata[key] else {
      throw CheckpointError.invalidMetadata(file: file, key: key, reason: "missing")
    }
    do {
      return try JSONDecoder().decode(type, from: Data(text.utf8))
    } catch {
      throw CheckpointError.invalidMetadata(
        file: file, key: key, reason: "not a JSON \(T.self): \(error)")
    }
  }

  private static func check(
    _ saved: HostTensor, against current: Tensor, name: String, file: String
  )
    throws
  {
    guard saved.shape == current.shape else {
      throw CheckpointError.mismatch(
        file: file, tensor: name,
        reason: "shape \(saved.shape) in the file, \(current.shape) expected")
    }
    guard saved.dtype == current.dtype else {
      throw CheckpointError.mismatch(
        file: file, tensor: name,
        reason: "dtype \(saved.dtype) in the file, \(current.dtype) expected")
    }
  }
}
