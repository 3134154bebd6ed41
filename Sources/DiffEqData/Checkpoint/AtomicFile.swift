import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Replacing a file so that a crash or an error at any point leaves either the old complete file
/// or the new complete file, never a mixture.
enum AtomicFile {
  /// Writes the concatenation of `parts` to a new temporary file in `url`'s directory, syncs it,
  /// renames it over `url`, then syncs the directory so that the rename itself is durable. On
  /// failure the temporary file is removed and `CheckpointError.io` names the step that failed.
  static func replace(_ url: URL, with parts: [[UInt8]]) throws {
    let file = url.lastPathComponent
    let directory = url.deletingLastPathComponent().path
    func failure(_ step: String, _ code: Int32 = errno) -> CheckpointError {
      .io(file: file, reason: "\(step): \(String(cString: strerror(code)))")
    }

    // O_EXCL with a random name rather than mkstemp: the file gets the usual 0666 & ~umask mode.
    var temporary = ""
    var fd: Int32 = -1
    for _ in 0..<16 {
      let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
      temporary = directory + "/." + file + ".tmp-" + suffix
      fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
      if fd >= 0 || errno != EEXIST { break }
    }
    guard fd >= 0 else { throw failure("cannot create a temporary file in \(directory)") }

    var renamed = false
    defer {
      if fd >= 0 { close(fd) }
      if !renamed { unlink(temporary) }
    }
    for part in parts {
      try part.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
          let n = write(fd, raw.baseAddress! + done, raw.count - done)
          if n < 0 && errno == EINTR { continue }
          guard n > 0 else { throw failure("cannot write \(temporary)", n < 0 ? errno : EIO) }
          done += n
        }
      }
    }
    guard fsync(fd) == 0 else { throw failure("cannot sync \(temporary)") }
    let closed = close(fd)
    fd = -1
    guard closed == 0 else { throw failure("cannot close \(temporary)") }
    guard rename(temporary, url.path) == 0 else { throw failure("cannot rename over \(url.path)") }
    renamed = true

    let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard dirfd >= 0 else { throw failure("cannot open \(directory) to sync it") }
    defer { close(dirfd) }
    // Some file systems cannot sync a directory (EINVAL); there the rename is as durable as it
    // can be made.
    guard fsync(dirfd) == 0 || errno == EINVAL else { throw failure("cannot sync \(directory)") }
  }
}
