/// Why a checkpoint could not be read, written or applied. Every message begins with the file
/// concerned and then says what is wrong.
public enum CheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The file could not be opened, read, written, synced or renamed.
  case io(file: String, reason: String)
  /// The file ends before the data its own header promises.
  case truncated(file: String, size: Int, needed: Int, what: String)
  /// Not a safetensors file at all: absurd header length, or a header that is not a UTF-8 JSON
  /// object.
  case notSafeTensors(file: String, reason: String)
  /// A well-formed JSON header whose contents violate the format.
  case invalidHeader(file: String, reason: String)
  /// A tensor stored with an element type other than F32 or F64.
  case unsupportedDType(file: String, tensor: String, dtype: String)
  /// `data_offsets` that disagree with the shape, overlap, leave gaps or run past the data.
  case invalidOffsets(file: String, tensor: String, reason: String)
  /// Tensors a module or optimiser expects that the checkpoint lacks.
  case missingTensors(file: String, names: [String])
  /// Tensors in the checkpoint that the module has no parameter for.
  case unexpectedTensors(file: String, names: [String])
  /// A tensor whose shape or element type differs from the parameter it is loaded into.
  case mismatch(file: String, tensor: String, reason: String)
  /// A metadata entry that is missing or cannot be decoded.
  case invalidMetadata(file: String, key: String, reason: String)
  /// Values that cannot be written: an inconsistent `HostTensor`, a reserved or duplicate name.
  case invalidArgument(String)

  public var description: String {
    switch self {
    case .io(let file, let reason): return "\(file): \(reason)"
    case .truncated(let file, let size, let needed, let what):
      return "\(file): truncated: \(size) bytes, but \(what) needs \(needed)"
    case .notSafeTensors(let file, let reason): return "\(file): not a safetensors file: \(reason)"
    case .invalidHeader(let file, let reason):
      return "\(file): invalid safetensors header: \(reason)"
    case .unsupportedDType(let file, let tensor, let dtype):
      return "\(file): tensor '\(tensor)' has dtype \(dtype); only F32 and F64 are supported"
    case .invalidOffsets(let file, let tensor, let reason):
      return "\(file): tensor '\(tensor)': \(reason)"
    case .missingTensors(let file, let names):
      return "\(file): missing tensors \(names.joined(separator: ", "))"
    case .unexpectedTensors(let file, let names):
      return "\(file): unexpected tensors \(names.joined(separator: ", "))"
    case .mismatch(let file, let tensor, let reason):
      return "\(file): tensor '\(tensor)': \(reason)"
    case .invalidMetadata(let file, let key, let reason):
      return "\(file): metadata '\(key)': \(reason)"
    case .invalidArgument(let reason): return reason
    }
  }
}
