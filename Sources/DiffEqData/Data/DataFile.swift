import Foundation

/// Finding and reading data-set files: whole, size-limited, and transparently gunzipped.
enum DataFile {
  /// The largest file (or decompressed contents) a reader accepts: far above any supported data
  /// set (CIFAR-10's largest file is 31 MB, MNIST's 47 MB decompressed), far below what would
  /// exhaust memory.
  static let defaultLimit = 1 << 30

  /// `directory/name`, or `directory/name.gz` when only that exists.
  static func locate(_ name: String, in directory: URL) throws -> URL {
    for candidate in [name, name + ".gz"] {
      let url = directory.appendingPathComponent(candidate)
      if FileManager.default.fileExists(atPath: url.path) { return url }
    }
    throw DatasetError.fileNotFound(path: directory.appendingPathComponent(name).path + "[.gz]")
  }

  /// The contents of the regular file at `url`, decompressed if they start with the gzip magic
  /// number (whatever the file's name), at most `limit` bytes either way. `declaredSize` reads
  /// the size the format's header declares off the first decompressed bytes (see
  /// `Gzip.decompress`), so a small compressed file cannot inflate far beyond it.
  static func load(
    _ url: URL, limit: Int = defaultLimit, declaredSize: (([UInt8]) throws -> Int?)? = nil
  ) throws -> [UInt8] {
    let file = url.lastPathComponent
    do {
      try RegularFile.check(url, limit: limit)
    } catch .missing {
      throw DatasetError.fileNotFound(path: url.path)
    } catch .notRegular {
      throw DatasetError.unreadable(file: file, reason: "not a regular file")
    } catch .tooLarge(let size) {
      throw DatasetError.tooLarge(file: file, bytes: size, limit: limit)
    }
    let bytes: [UInt8]
    do {
      bytes = [UInt8](try Data(contentsOf: url))
    } catch {
      throw DatasetError.unreadable(file: file, reason: "\(error.localizedDescription)")
    }
    return try contents(bytes, file: file, limit: limit, declaredSize: declaredSize)
  }

  /// A file's bytes as its reader sees them: decompressed if they start with the gzip magic
  /// number (at most `limit` bytes, or what `declaredSize` reads off the first ones).
  static func contents(
    _ bytes: [UInt8], file: String, limit: Int = defaultLimit,
    declaredSize: (([UInt8]) throws -> Int?)? = nil
  ) throws -> [UInt8] {
    guard bytes.count <= limit else {
      throw DatasetError.tooLarge(file: file, bytes: bytes.count, limit: limit)
    }
    guard Gzip.isCompressed(bytes) else { return bytes }
    do {
      return try Gzip.decompress(bytes, limit: limit, declaredSize: declaredSize)
    } catch let error as GzipError {
      throw DatasetError.corruptCompression(file: file, reason: error.reason)
    }
  }
}
