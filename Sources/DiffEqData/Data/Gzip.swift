internal import CZlib

/// gzip (RFC 1952) compression and decompression in memory, through zlib.
///
/// Data sets are distributed gzip-compressed (MNIST's `*.gz`); `decompress` reads them, and
/// `compress` exists so that tests and tools can produce such files without an external program.
public enum Gzip {
  /// Whether `bytes` begin with the gzip magic number 1f 8b.
  public static func isCompressed(_ bytes: [UInt8]) -> Bool {
    bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
  }

  /// The decompressed contents of one or more concatenated gzip members (as `gunzip` reads them).
  ///
  /// Throws `GzipError` for data that is not gzip, corrupt (including a CRC or length mismatch in
  /// a trailer), truncated, followed by non-gzip bytes, or that would decompress to more than
  /// `limit` bytes; the limit is checked as output is produced, so a decompression bomb costs at
  /// most `limit` bytes of memory.
  ///
  /// `declaredSize`, given the output so far, returns the whole output's size once the format's
  /// own header says it (nil while it needs more bytes; it may throw on a bad header): from then on
  /// that is the limit, so a file whose header promises little cannot inflate to `limit`.
  public static func decompress(
    _ bytes: [UInt8], limit: Int = 1 << 30, declaredSize: (([UInt8]) throws -> Int?)? = nil
  ) throws -> [UInt8] {
    guard isCompressed(bytes) else { throw GzipError("not gzip data (no 1f 8b magic number)") }
    var stream = z_stream()
    guard czlib_inflate_init_gzip(&stream) == Z_OK else {
      throw GzipError("zlib could not initialise a decompressor")
    }
    defer { inflateEnd(&stream) }

    // The trailer's ISIZE (the length mod 2³²) of the last member is only a hint: it may lie.
    // Deflate cannot expand by more than about 1032:1, which bounds an honest hint.
    let n = bytes.count
    let isize =
      n < 4 ? 0 : bytes[(n - 4)...].reversed().reduce(0) { $0 << 8 | Int($1) }
    var out: [UInt8] = []
    out.reserveCapacity(min(isize, limit, n.multipliedReportingOverflow(by: 1032).partialValue))
    var limit = limit
    var declared = false
    let chunk = 1 << 16
    var buffer = [UInt8](repeating: 0, count: chunk)

    try bytes.withUnsafeBufferPointer { input in
      // avail_in is 32 bits wide, so input is fed in slices.
      var fed = 0
      func feed() {
        let size = min(n - fed, 1 << 30)
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress! + fed)
        stream.avail_in = uInt(size)
        fed += size
      }
      feed()
      while true {
        if stream.avail_in == 0 && fed < n { feed() }
        let status = buffer.withUnsafeMutableBufferPointer { out -> Int32 in
          stream.next_out = out.baseAddress
          stream.avail_out = uInt(chunk)
          return inflate(&stream, Z_NO_FLUSH)
        }
        let produced = chunk - Int(stream.avail_out)
        guard out.count + produced <= limit else {
          throw GzipError(
            declared
              ? "decompresses to more than the \(limit) bytes its header declares"
              : "decompresses to more than the limit of \(limit) bytes")
        }
        out.append(contentsOf: buffer[0..<produced])
        if !declared, let declaredSize, let size = try declaredSize(out) {
          declared = true
          limit = min(limit, size)
          guard out.count <= limit else {
            throw GzipError("decompresses to more than the \(limit) bytes its header declares")
          }
        }
        let unread = Int(stream.avail_in) + (n - fed)
        switch status {
        case Z_OK:
          continue
        case Z_STREAM_END:
          if unread == 0 { return }
          let next = n - unread
          guard unread >= 2 && input[next] == 0x1f && input[next + 1] == 0x8b else {
            throw GzipError("\(unread) bytes of trailing garbage after the gzip stream")
          }
          guard inflateReset(&stream) == Z_OK else { throw GzipError("zlib could not reset") }
        case Z_BUF_ERROR where unread == 0:
          throw GzipError("truncated: the input ends inside the compressed stream")
        case Z_BUF_ERROR:
          continue
        case Z_MEM_ERROR:
          throw GzipError("zlib ran out of memory")
        default:
          throw GzipError(message(stream) ?? "corrupt compressed data (zlib status \(status))")
        }
      }
    }
    return out
  }

  /// `bytes` as a single gzip member (no file name, modification time zero), at a zlib `level`
  /// from 0 (stored) to 9 (smallest).
  public static func compress(_ bytes: [UInt8], level: Int = 6) throws -> [UInt8] {
    guard (0...9).contains(level) else {
      throw GzipError("compression level \(level) not in 0...9")
    }
    var stream = z_stream()
    guard czlib_deflate_init_gzip(&stream, Int32(level)) == Z_OK else {
      throw GzipError("zlib could not initialise a compressor")
    }
    defer { deflateEnd(&stream) }
    var out: [UInt8] = []
    let chunk = 1 << 16
    var buffer = [UInt8](repeating: 0, count: chunk)
    try bytes.withUnsafeBufferPointer { input in
      var fed = 0
      while true {
        if stream.avail_in == 0 && fed < bytes.count {
          let size = min(bytes.count - fed, 1 << 30)
          stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress! + fed)
          stream.avail_in = uInt(size)
          fed += size
        }
        let flush = fed == bytes.count ? Z_FINISH : Z_NO_FLUSH
        let status = buffer.withUnsafeMutableBufferPointer { out -> Int32 in
          stream.next_out = out.baseAddress
          stream.avail_out = uInt(chunk)
          return deflate(&stream, flush)
        }
        out.append(contentsOf: buffer[0..<(chunk - Int(stream.avail_out))])
        switch status {
        case Z_STREAM_END: return
        case Z_OK, Z_BUF_ERROR: continue
        default: throw GzipError(message(stream) ?? "zlib deflate failed (status \(status))")
        }
      }
    }
    return out
  }

  private static func message(_ stream: z_stream) -> String? {
    stream.msg.map { String(cString: $0) }
  }
}

/// Why `Gzip` could not compress or decompress; readers wrap it in an error naming the file.
public struct GzipError: Error, CustomStringConvertible, Equatable, Sendable {
  public let reason: String
  public init(_ reason: String) { self.reason = reason }
  public var description: String { reason }
}
