import DiffEqNet
import Dispatch
import Foundation

/// Turns Ctrl-C into a stop request, so the trainer finishes its step and checkpoints; a second
/// Ctrl-C exits at once.
final class InterruptHandler {
  private let source: DispatchSourceSignal
  private let flag: StopFlag

  init(_ flag: StopFlag) {
    self.flag = flag
    signal(SIGINT, SIG_IGN)
    source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    source.setEventHandler {
      // `exit` would run atexit handlers and destructors while the worker pool and OpenCL
      // threads are still running; `_exit` ends the process at once. Nothing is lost: the last
      // checkpoint was written atomically.
      if flag.isSet { _exit(130) }
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
    // After a stop request the process is on its way to exit with 130: a second Ctrl-C that
    // arrives now must not end it by the default action instead.
    if !flag.isSet { signal(SIGINT, SIG_DFL) }
  }
}
