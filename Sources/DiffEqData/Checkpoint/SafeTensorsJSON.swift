/// A parsed JSON (RFC 8259) value, as a safetensors header needs it: object members keep their
/// order and numbers keep their text, so integers of any size are checked exactly rather than
/// through a `Double`.
///
/// A small strict parser of our own rather than `JSONSerialization`, because the header of an
/// untrusted file must be rejected cleanly on every input: duplicate keys, lone surrogates and
/// deep nesting are errors here, not platform-dependent behaviour or a stack overflow.
enum SafeTensorsJSON {
  case null
  case bool(Bool)
  case number(String)
  case string(String)
  case array([SafeTensorsJSON])
  case object([(key: String, value: SafeTensorsJSON)])

  /// The most elements of one array: a safetensors header's arrays are shapes and offset pairs,
  /// and a shape of millions of (zero) dimensions would cost gigabytes of parse nodes.
  static let maxArrayElements = 64
  /// The most members of one object: one per tensor, plus `__metadata__`.
  static let maxObjectMembers = 1_000_000

  /// Parses exactly one value surrounded by optional whitespace.
  static func parse(_ bytes: ArraySlice<UInt8>) throws -> SafeTensorsJSON {
    var parser = SafeTensorsJSONParser(bytes: Array(bytes))
    parser.skipWhitespace()
    let value = try parser.value(depth: 0)
    parser.skipWhitespace()
    guard parser.position == parser.bytes.count else { throw parser.error("trailing characters") }
    return value
  }

  /// The value as a non-negative integer, if it is one written without fraction or exponent.
  var nonNegativeInt: Int? {
    guard case .number(let text) = self, text.utf8.allSatisfy({ (0x30...0x39).contains($0) })
    else { return nil }
    return Int(text)
  }

  /// `s` as a JSON string literal, escaped as serde_json (and so Python's safetensors) escapes
  /// it: `"` and `\`, the short forms of \b \f \n \r \t, `\u00XX` for other control characters,
  /// everything else as raw UTF-8.
  static func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\u{08}": out += "\\b"
      case "\u{0C}": out += "\\f"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}

extension SafeTensorsJSON {
  /// A failure to parse JSON, with the byte offset where it was noticed.
  struct ParseError: Error, CustomStringConvertible {
    let reason: String
    let offset: Int
    var description: String { "\(reason) at byte \(offset)" }
  }
}

private struct SafeTensorsJSONParser {
  let bytes: [UInt8]
  var position = 0
  /// Far deeper than any header; bounds the recursion on hostile input.
  static let maxDepth = 64

  init(bytes: [UInt8]) { self.bytes = bytes }

  func error(_ reason: String) -> SafeTensorsJSON.ParseError {
    SafeTensorsJSON.ParseError(reason: reason, offset: position)
  }

  var current: UInt8? { position < bytes.count ? bytes[position] : nil }

  mutating func skipWhitespace() {
    while let c = current, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { position += 1 }
  }

  mutating func expect(_ literal: String) throws {
    for byte in literal.utf8 {
      guard current == byte else { throw error("expected '\(literal)'") }
      position += 1
    }
  }

  mutating func value(depth: Int) throws -> SafeTensorsJSON {
    guard depth < Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth)") }
    switch current {
    case UInt8(ascii: "{"): return try object(depth: depth)
    case UInt8(ascii: "["): return try array(depth: depth)
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"):
      try expect("true")
      return .bool(true)
    case UInt8(ascii: "f"):
      try expect("false")
      return .bool(false)
    case UInt8(ascii: "n"):
      try expect("null")
      return .null
    case UInt8(ascii: "-"): return try number()
    case let c? where (0x30...0x39).contains(c): return try number()
    case nil: throw error("unexpected end of input")
    default: throw error("unexpected character")
    }
  }

  mutating func object(depth: Int) throws -> SafeTensorsJSON {
    position += 1
    var members: [(key: String, value: SafeTensorsJSON)] = []
    var keys = Set<String>()
    skipWhitespace()
    if current == UInt8(ascii: "}") {
      position += 1
      return .object(members)
    }
    while true {
      skipWhitespace()
      guard current == UInt8(ascii: "\"") else { throw error("expected a string key") }
      let key = try string()
      guard keys.insert(key).inserted else { throw error("duplicate key \"\(key)\"") }
      skipWhitespace()
      try expect(":")
      skipWhitespace()
      guard members.count < SafeTensorsJSON.maxObjectMembers else {
        throw error("an object has more than \(SafeTensorsJSON.maxObjectMembers) members")
      }
      members.append((key, try value(depth: depth + 1)))
      skipWhitespace()
      if current == UInt8(ascii: ",") {
        position += 1
        continue
      }
      try expect("}")
      return .object(members)
    }
  }

  mutating func array(depth: Int) throws -> SafeTensorsJSON {
    position += 1
    var elements: [SafeTensorsJSON] = []
    skipWhitespace()
    if current == UInt8(ascii: "]") {
      position += 1
      return .array(elements)
    }
    while true {
      skipWhitespace()
      guard elements.count < SafeTensorsJSON.maxArrayElements else {
        throw error("an array has more than \(SafeTensorsJSON.maxArrayElements) elements")
      }
      elements.append(try value(depth: depth + 1))
      skipWhitespace()
      if current == UInt8(ascii: ",") {
        position += 1
        continue
      }
      try expect("]")
      return .array(elements)
    }
  }

  mutating func number() throws -> SafeTensorsJSON {
    let start = position
    func digits() -> Int {
      let from = position
      while let c = current, (0x30...0x39).contains(c) { position += 1 }
      return position - from
    }
    if current == UInt8(ascii: "-") { position += 1 }
    if current == UInt8(ascii: "0") {
      position += 1
    } else if digits() == 0 {
      throw error("malformed number")
    }
    if current == UInt8(ascii: ".") {
      position += 1
      guard digits() > 0 else { throw error("malformed number") }
    }
    if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
      position += 1
      if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
      guard digits() > 0 else { throw error("malformed number") }
    }
    return .number(String(decoding: bytes[start..<position], as: UTF8.self))
  }

  /// A string literal; the header was validated as UTF-8 before parsing, so raw bytes copy over.
  mutating func string() throws -> String {
    position += 1
    var out: [UInt8] = []
    while true {
      guard let c = current else { throw error("unterminated string") }
      position += 1
      switch c {
      case UInt8(ascii: "\""):
        return String(decoding: out, as: UTF8.self)
      case UInt8(ascii: "\\"):
        guard let e = current else { throw error("unterminated string") }
        position += 1
        switch e {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
          var scalar = try hex4()
          if (0xD800..<0xDC00).contains(scalar) {
            guard current == UInt8(ascii: "\\") else { throw error("lone surrogate") }
            position += 1
            guard current == UInt8(ascii: "u") else { throw error("lone surrogate") }
            position += 1
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw error("lone surrogate") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
          }
          guard let u = Unicode.Scalar(scalar) else { throw error("lone surrogate") }
          out += Array(String(Character(u)).utf8)
        default: throw error("invalid escape")
        }
      case 0..<0x20:
        throw error("unescaped control character in string")
      default:
        out.append(c)
      }
    }
  }

  mutating func hex4() throws -> UInt32 {
    var value: UInt32 = 0
    for _ in 0..<4 {
      guard let c = current, let digit = hexDigit(c) else { throw error("invalid \\u escape") }
      value = value << 4 | digit
      position += 1
    }
    return value
  }

  func hexDigit(_ c: UInt8) -> UInt32? {
    switch c {
    case 0x30...0x39: return UInt32(c - 0x30)
    case 0x41...0x46: return UInt32(c - 0x41 + 10)
    case 0x61...0x66: return UInt32(c - 0x61 + 10)
    default: return nil
    }
  }
}
