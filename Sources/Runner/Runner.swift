import ArgumentParser
import DiffEqNet

@main
struct Runner: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "runner", abstract: "Train differential-equation neural networks.")
}
