import DiffEqCore

/// The image classifiers of the model zoo, by the name settings and the command line use.
public enum ModelArchitecture: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
  /// The Neural ODE paper's ODE-Net: an ODE block solved by any solver, adjoint gradients.
  case odenet
  /// The same network with residual blocks in place of the ODE block.
  case resnet
  /// The ODE block backpropagated directly through fixed RK4 steps.
  case rknet

  public var description: String { rawValue }

  /// Throws a message listing the known names when `text` is none of them.
  public init(parsing text: String) throws {
    guard let architecture = ModelArchitecture(rawValue: text.lowercased()) else {
      throw TensorError.invalidArgument(
        op: "model",
        reason:
          "unknown model '\(text)' (known: \(Self.allCases.map(\.rawValue).joined(separator: ", ")))"
      )
    }
    self = architecture
  }

  public init(from decoder: any Decoder) throws {
    self = try ModelArchitecture(parsing: try decoder.singleValueContainer().decode(String.self))
  }
}
