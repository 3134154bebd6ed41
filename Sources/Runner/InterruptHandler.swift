import DiffEqNet
import Dispatch
import Foundation

/// Turns Ctrl-C into a stop request, so the trainer finishes its step and checkpoints; a second
/// Ctrl-C exits at once.
final class InterruptHandler {
  private let source: DispatchSourceSignal

  init(_ flag: StopFlag) {
    signal(SIGINT, SIG_IGN)
    source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    source.setEventHandler {
      if flag.isSet { exit(130) }
      flag.set()
      FileHandle.standardError.write(
        Data(
          "\ninterrupt: finishing the current step, then checkpointing (Ctrl-C again to quit now)\n"
            .utf8))
    }
    source.resume()
  }

  func restore() {
    source.cancel()
    signal(SIGINT, SIG_DFL)
  }
}
