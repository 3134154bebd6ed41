import ArgumentParser
import DiffEqNet
import Foundation

/// The folder a run's `data` setting names. A path is relative to the working directory. When
/// it was not given as `--data` and names the default, the bundled MNIST subset, that is also
/// looked for beside the executable and in the folders above it, so that `runner train` works
/// from any directory (the built binary lives in `.build/release/` of the checkout, the GPU
/// bundle in `.gpu/`).
func dataFolder(_ data: String, givenAsFlag: Bool = false) throws -> URL {
  let given = URL(fileURLWithPath: data)
  if isDirectory(given) { return given }
  guard data == TrainingConfiguration.bundledData, !givenAsFlag else {
    throw ValidationError("data folder '\(data)' does not exist")
  }
  var tried: [String] = [given.path]
  var folder = executableURL().deletingLastPathComponent()
  while true {
    let candidate = folder.appendingPathComponent(data)
    if isDirectory(candidate) { return candidate }
    tried.append(candidate.path)
    let parent = folder.deletingLastPathComponent()
    if parent.path == folder.path { break }
    folder = parent
  }
  throw ValidationError(
    "the bundled data folder '\(data)' was not found; looked in:\n  "
      + tried.joined(separator: "\n  ") + "\n(give --data FOLDER)")
}

private func isDirectory(_ url: URL) -> Bool {
  var isDirectory: ObjCBool = false
  return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
    && isDirectory.boolValue
}

/// This process's executable with symbolic links resolved (Linux's /proc/self/exe, else argv[0]).
private func executableURL() -> URL {
  if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
    return URL(fileURLWithPath: path)
  }
  return URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
}
