import CFuzzerDriver

/// Runs libFuzzer over `test`, with this process's arguments (libFuzzer's flags and corpus
/// folders). `test` may throw (an error is a correct answer to a bad input); a crash, a hang or a
/// sanitizer report is what the fuzzer looks for.
public func fuzz(_ test: @escaping ([UInt8]) throws -> Void) -> Never {
  FuzzTarget.test = test
  var argc = CommandLine.argc
  var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
  let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    _ = try? FuzzTarget.test?(bytes)
    return 0
  }
  exit(status)
}

/// The function under test (a C callback cannot capture it).
enum FuzzTarget {
  nonisolated(unsafe) static var test: (([UInt8]) throws -> Void)?
}

@_silgen_name("exit") func exit(_ status: Int32) -> Never
