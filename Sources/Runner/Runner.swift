import ArgumentParser

@main
struct Runner: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "runner",
    abstract: "Train and measure differential-equation neural networks on OpenCL or OpenBLAS.",
    discussion: """
      Devices: `--device auto` picks the first OpenCL GPU or accelerator and otherwise the CPU \
      backend (OpenBLAS); `cpu` forces the CPU backend; `opencl` or `opencl:N` picks an OpenCL \
      device by its index in `runner devices`.
      """,
    subcommands: [
      Train.self, Eval.self, Export.self, Import.self, Devices.self, Bench.self, Tune.self,
      CompareSolvers.self,
    ])
}
