import DiffEqNet
import Foundation

/// A one-line live progress bar on a terminal; on a pipe or file, a plain line every tenth of an
/// epoch.
final class ProgressDisplay {
  private let metrics: [TaskMetric]
  private let isTerminal = isatty(STDOUT_FILENO) != 0
  private var lastLogged = -1
  private var drawn = false

  init(metrics: [TaskMetric]) { self.metrics = metrics }

  func update(_ p: BatchProgress) {
    var text =
      "epoch \(p.epoch)/\(p.epochs) batch \(p.batch)/\(p.batches)  loss \(fixed(p.loss, 4))"
    for metric in metrics {
      if let v = p.metrics[metric.name] { text += "  \(metric.name) \(formatted(v, metric))" }
    }
    text +=
      "  NFE \(p.nfeForward)/\(p.nfeBackward)  \(fixed(p.samplesPerSecond, 0)) samples/s  ETA \(duration(p.remainingSeconds))"
    if isTerminal {
      let width = 24
      let filled = p.batches > 0 ? width * p.batch / p.batches : 0
      let bar =
        String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
      FileHandle.standardOutput.write(Data("\r[\(bar)] \(text)\u{1B}[K".utf8))
      drawn = true
    } else {
      let tenth = p.batches > 0 ? 10 * p.batch / p.batches : 10
      if tenth != lastLogged {
        lastLogged = tenth
        print(text)
        fflush(nil)  // a pipe or file is block-buffered: show progress as it happens
      }
    }
  }

  /// Ends the live line so the next output starts on its own line.
  func finishLine() {
    if drawn { FileHandle.standardOutput.write(Data("\n".utf8)) }
    drawn = false
    lastLogged = -1
  }

  private func duration(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
  }
}
