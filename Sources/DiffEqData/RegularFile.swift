import Foundation

/// The check every reader of a file from elsewhere makes before reading it: it must be a regular
/// file (a FIFO or a device such as /dev/zero would block or read forever) of at most a size.
enum RegularFile {
  enum Problem: Error {
    /// It does not exist or cannot be examined.
    case missing(String)
    case notRegular
    case tooLarge(bytes: Int)
  }

  /// Throws a `Problem` unless `url`, its links followed, is a regular file of at most `limit`
  /// bytes.
  static func check(_ url: URL, limit: Int) throws(Problem) {
    let attributes: [FileAttributeKey: Any]
    do {
      // attributesOfItem does not follow links, and files are often linked into place.
      attributes = try FileManager.default.attributesOfItem(
        atPath: url.resolvingSymlinksInPath().path)
    } catch {
      throw .missing(error.localizedDescription)
    }
    guard attributes[.type] as? FileAttributeType == .typeRegular else { throw .notRegular }
    if let size = (attributes[.size] as? NSNumber)?.intValue, size > limit {
      throw .tooLarge(bytes: size)
    }
  }
}
