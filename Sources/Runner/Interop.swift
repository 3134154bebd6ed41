import ArgumentParser
import DiffEqNet
import Foundation

/// `runner export`: a checkpoint's ODE-Net as a torchdiffeq state_dict.
struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write a checkpoint's ODE-Net as the state_dict of torchdiffeq's odenet_mnist.",
    discussion: """
      The output is a safetensors file that `model.load_state_dict(safetensors.torch.load_file( \
      OUT), strict=True)` loads into the model of torchdiffeq's examples/odenet_mnist.py at the \
      checkpoint's width. That model takes raw [0, 1] pixels: the checkpoint's input \
      normalisation is folded into the first convolution. Solve it as the checkpoint was \
      trained (torchdiffeq's method='rk4' is `--solver rk38` here). Only ODE-Nets whose \
      GroupNorms have torchdiffeq's min(32, width) groups qualify (width 64, or trained with \
      --norm-groups).
      """)

  @Option(help: "A checkpoint.safetensors written by `runner train` or `runner import`.")
  var checkpoint: String
  @Option(help: "The state_dict file to write.") var torchdiffeq: String

  func run() throws {
    let url = URL(fileURLWithPath: checkpoint)
    let c = try Checkpoint.decode(
      TrainingConfiguration.self, key: "config", in: try SafeTensorsFile.readMetadata(from: url),
      file: url.lastPathComponent)
    let trainer = try Trainer(
      c, backend: CPUBackend(), train: try placeholderData(c), test: try placeholderData(c))
    try trainer.loadCheckpoint(from: url)
    let stateDict = try TorchdiffeqODENet.stateDict(
      of: trainer.task.classifier, normalization: c.inputNormalization,
      file: url.lastPathComponent)
    try stateDict.write(to: URL(fileURLWithPath: torchdiffeq))
    print(
      "wrote \(stateDict.tensors.count) tensors of torchdiffeq's odenet_mnist to \(torchdiffeq)")
  }
}

/// `runner import`: a torchdiffeq ODE-Net's state_dict as a run folder that trains on here.
struct Import: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "import",
    abstract: "Start a run from the state_dict of torchdiffeq's odenet_mnist.",
    discussion: """
      Reads a safetensors state_dict (as `safetensors.torch.save_file(model.state_dict(), F)` \
      writes) of the model in torchdiffeq's examples/odenet_mnist.py, and writes \
      <out>/checkpoint.safetensors and <out>/config.json at epoch 0: `runner train --resume \
      --out <out>` continues training it here and `runner eval` evaluates it. The width, \
      channels and classes come from the tensors' shapes; the model gets torchdiffeq's \
      min(32, width) GroupNorm groups and takes raw [0, 1] pixels, as that example feeds it. \
      Other settings come from the flags (torchdiffeq's method='rk4' is `--solver rk38`).
      """)

  @Option(help: "The torchdiffeq state_dict (safetensors) to read.") var torchdiffeq: String
  @OptionGroup(title: "Settings") var settings: SettingFlags

  func run() throws {
    let url = URL(fileURLWithPath: torchdiffeq)
    let stateDict = try SafeTensorsFile.read(from: url)
    var (c, _, _) = try TorchdiffeqODENet.configuration(
      of: stateDict, file: url.lastPathComponent)
    var flags = try settings.settings()
    for key in ["model", "width", "normGroups"] where flags[key] != nil {
      throw ValidationError("--\(key) is read off the state_dict; leave it out")
    }
    flags["model"] = nil
    c = try mergedConfiguration(c, flags, source: "flags")
    do { try c.validate() } catch { throw ValidationError("\(error)") }
    let backend = CPUBackend()
    let (train, test) = try c.loadData(
      from: try dataFolder(c.data, givenAsFlag: settings.data != nil))
    let trainer = try Trainer(c, backend: backend, train: train, test: test)
    try TorchdiffeqODENet.load(
      stateDict, into: trainer.task.classifier, file: url.lastPathComponent)
    let folder = URL(fileURLWithPath: c.out)
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try trainer.saveCheckpoint(to: folder.appendingPathComponent("checkpoint.safetensors"))
    try writeJSON(
      ResolvedRun(configuration: c, device: backend.name, parameters: trainer.model.parameterCount),
      to: folder.appendingPathComponent("config.json"))
    print(
      "imported a width-\(c.width) ODE-Net (\(trainer.model.parameterCount) parameters) into \(folder.path)/checkpoint.safetensors; continue with: runner train --resume --out \(c.out)"
    )
  }
}

/// A one-image data set of the shape `c`'s data has, for building a model without its data.
private func placeholderData(_ c: TrainingConfiguration) throws -> ImageDataset {
  let (channels, side, classes) =
    c.format.isCIFAR ? (3, 32, c.format == .cifar100 ? 100 : 10) : (1, 28, 10)
  return try ImageDataset(
    name: "placeholder", images: [UInt8](repeating: 0, count: channels * side * side),
    labels: [0], channels: channels, height: side, width: side, classes: classes)
}
