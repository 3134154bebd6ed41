import Foundation

/// One JSON object on one line from ordered fields (String, Int, Double or Bool values), for the
/// benchmarks' `--json` output.
func formatJSONLine(_ fields: [(String, Any)]) -> String {
  func encode(_ v: Any) -> String {
    switch v {
    case let s as String:
      return "\""
        + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(
          of: "\"", with: "\\\"") + "\""
    case let i as Int: return String(i)
    case let d as Double: return d.isFinite ? String(format: "%.9g", d) : "null"
    case let b as Bool: return b ? "true" : "false"
    default: return "null"
    }
  }
  return "{" + fields.map { "\"\($0.0)\": \(encode($0.1))" }.joined(separator: ", ") + "}"
}
