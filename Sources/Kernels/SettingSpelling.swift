/// A setting's value spelled as text: read from the command line and from JSON by
/// `init(parsing:)`, written back as `description`. Conforming types get their `Codable` from
/// these two, so a settings file spells each value as a user types it (`"solver": "nag:0.9"`).
public protocol SpelledSetting: Codable, CustomStringConvertible {
  init(parsing text: String) throws
}

extension SpelledSetting {
  public init(from decoder: any Decoder) throws {
    self = try Self(parsing: try decoder.singleValueContainer().decode(String.self))
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}

/// A setting whose value is one of a fixed list of names, its cases' raw values.
public protocol NamedSetting: SpelledSetting, CaseIterable, RawRepresentable<String> {
  /// What the setting is called in messages: "model", "data format".
  static var settingName: String { get }
}

extension NamedSetting {
  /// The case named `text` (case-insensitively); an unknown name is a `SettingError` that lists
  /// the known ones.
  public init(parsing text: String) throws {
    guard let value = Self(rawValue: text.lowercased()) else {
      throw SettingError(
        setting: Self.settingName, value: text, known: Self.allCases.map(\.rawValue))
    }
    self = value
  }

  public init(from decoder: any Decoder) throws {
    self = try Self(parsing: try decoder.singleValueContainer().decode(String.self))
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(rawValue)
  }

  public var description: String { rawValue }
}

/// A setting's value that names nothing known.
public struct SettingError: Error, CustomStringConvertible, Equatable {
  public var setting: String
  public var value: String
  public var known: [String]

  public init(setting: String, value: String, known: [String]) {
    self.setting = setting
    self.value = value
    self.known = known
  }

  public var description: String {
    "unknown \(setting) '\(value)' (known: \(known.joined(separator: ", ")))"
  }
}
