import DiffEqCore
import DiffEqData
import DiffEqModels

/// The versions of DiffEqNet's training checkpoint, recorded in its metadata under `format`
/// (`diffeqnet-checkpoint-N`). A checkpoint of an older version is converted on load; one of a
/// newer version, or without the entry, is refused with a message that says which.
public enum CheckpointFormat: Int, Sendable, CaseIterable, Comparable {
  /// `ConcatConv2d` put the time channel last: input channel `in` of its weight
  /// [out, in + 1, k, k].
  case timeChannelLast = 1
  /// `ConcatConv2d` puts the time channel first, as torchdiffeq does; settings are typed (the
  /// same JSON spellings; `gradient` is written `backsolve` where it was `adjoint`).
  case timeChannelFirst = 2

  /// What `Trainer.saveCheckpoint` writes.
  public static let current = CheckpointFormat.timeChannelFirst
  /// The metadata key.
  public static let key = "format"

  /// The metadata value: `diffeqnet-checkpoint-N`.
  public var name: String { "diffeqnet-checkpoint-\(rawValue)" }

  /// The version `metadata` records; `file` names the checkpoint in errors.
  public init(of metadata: [String: String], file: String) throws {
    let prefix = "diffeqnet-checkpoint-"
    guard let value = metadata[Self.key], value.hasPrefix(prefix),
      let n = Int(value.dropFirst(prefix.count))
    else {
      throw CheckpointError.invalidMetadata(
        file: file, key: Self.key, reason: "not a DiffEqNet training checkpoint")
    }
    guard let format = CheckpointFormat(rawValue: n) else {
      throw CheckpointError.invalidMetadata(
        file: file, key: Self.key,
        reason:
          "format \(n) is not one this DiffEqNet reads (1–\(Self.current.rawValue)); "
          + "it was written by \(n > Self.current.rawValue ? "a newer" : "an unknown") version")
    }
    self = format
  }

  public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

  /// Converts `contents`, a checkpoint of this format for `model`, to the current format in
  /// place: tensors and optimiser state alike (SGD's momentum, Adam's moments share their
  /// parameter's layout).
  public func upgrade(_ contents: inout SafeTensorsFile, for model: Module, file: String) throws {
    guard self < Self.current else { return }
    // 1 → 2: each ConcatConv2d weight's time channel moves from last to first.
    for (path, module) in model.namedModules() where module is ConcatConv2d {
      let weight = path.isEmpty ? "conv.weight" : "\(path).conv.weight"
      let keys = contents.tensors.keys.filter {
        $0 == weight || ($0.hasPrefix(Checkpoint.optimizerPrefix) && $0.hasSuffix("." + weight))
      }
      for key in keys {
        contents.tensors[key] = try Self.timeChannelFirst(contents.tensors[key]!, key, file)
      }
    }
    contents.metadata[Self.key] = Self.current.name
  }

  /// `w` [out, in + 1, k, k] with input channel `in` (the time's) moved to position 0.
  static func timeChannelFirst(_ w: HostTensor, _ key: String, _ file: String) throws
    -> HostTensor
  {
    guard w.shape.count == 4, w.shape[1] >= 2 else {
      throw CheckpointError.mismatch(
        file: file, tensor: key, reason: "shape \(w.shape) is not a ConcatConv2d weight")
    }
    let channels = w.shape[1]
    let plane = w.shape[2] * w.shape[3] * w.dtype.size
    var bytes = [UInt8]()
    bytes.reserveCapacity(w.bytes.count)
    for o in 0..<w.shape[0] {
      let row = o * channels * plane
      for c in [channels - 1] + Array(0..<(channels - 1)) {
        bytes += w.bytes[(row + c * plane)..<(row + (c + 1) * plane)]
      }
    }
    return try HostTensor(dtype: w.dtype, shape: w.shape, bytes: bytes)
  }
}
