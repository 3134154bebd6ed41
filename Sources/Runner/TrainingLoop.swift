import ArgumentParser
import DiffEqNet
import Foundation

/// Runs `trainer` to its last epoch with what every task gets alike: `--resume` from
/// `<folder>/checkpoint.safetensors`, a live progress line, Ctrl-C to checkpoint and stop, and
/// after each epoch the checkpoint, `metrics.jsonl`, `curve.svg`, `config.json` and the task's
/// own outputs (`TrainingTask.writeArtifacts`). A run stopped by Ctrl-C exits with status 130
/// (after its checkpoint), as an interrupted program does.
func runTraining<Task: TrainingTask>(_ trainer: Trainer<Task>, in folder: URL, resume: Bool)
  throws
{
  let c = trainer.configuration
  let checkpoint = folder.appendingPathComponent("checkpoint.safetensors")
  let metricsURL = folder.appendingPathComponent("metrics.jsonl")
  var history: [EpochMetrics] = []
  if resume {
    try trainer.loadCheckpoint(from: checkpoint)
    history = try readMetrics(metricsURL).filter { $0.epoch <= trainer.epoch }
    if trainer.isFinished {
      print(
        "nothing to resume: \(trainer.task.modelName) has completed \(trainer.epoch) of \(c.epochs) epochs (raise --epochs to go on)"
      )
      return
    }
    print(
      "resuming \(trainer.task.modelName) at epoch \(trainer.epoch + 1), batch \(trainer.batch + 1)"
    )
  }
  try writeJSON(
    ResolvedRun(
      configuration: c, device: trainer.backend.name, parameters: trainer.model.parameterCount),
    to: folder.appendingPathComponent("config.json"))

  let interrupt = InterruptHandler(trainer.stopRequested)
  defer { interrupt.restore() }
  let progress = ProgressDisplay(metrics: trainer.task.metrics)
  let every = c.checkpointEvery ?? Int.max
  while !trainer.isFinished {
    let finished = try trainer.trainEpoch { p in
      progress.update(p)
      // Mid-epoch checkpoints; the one at the epoch's end is written below, with its metrics.
      if p.batch % every == 0 && p.batch < p.batches { try trainer.saveCheckpoint(to: checkpoint) }
    }
    guard let m = finished else {
      try trainer.saveCheckpoint(to: checkpoint)
      progress.finishLine()
      print(
        "stopped at epoch \(trainer.epoch + 1), batch \(trainer.batch); checkpoint written to \(checkpoint.path) (continue with --resume)"
      )
      throw ExitCode(130)
    }
    try trainer.saveCheckpoint(to: checkpoint)
    history.append(m)
    try writeMetrics(history, to: metricsURL)
    try LearningCurve(history, metrics: trainer.task.metrics).svg().write(
      to: folder.appendingPathComponent("curve.svg"), atomically: true, encoding: .utf8)
    try trainer.task.writeArtifacts(to: folder, history: history)
    progress.finishLine()
    print(epochSummary(m, epochs: c.epochs, metrics: trainer.task.metrics))
    fflush(nil)
    if trainer.stopRequested.isSet {
      print("stopped after epoch \(m.epoch); continue with --resume")
      throw ExitCode(130)
    }
  }
}

/// One line per finished epoch: losses, the task's metrics, NFE, time and throughput.
func epochSummary(_ m: EpochMetrics, epochs: Int, metrics: [TaskMetric]) -> String {
  var text = "epoch \(m.epoch)/\(epochs)  train loss \(fixed(m.trainLoss, 4))"
  for metric in metrics {
    if let v = m.train(metric.name) { text += " \(metric.name) \(formatted(v, metric))" }
  }
  text += "  test loss \(fixed(m.testLoss, 4))"
  for metric in metrics {
    if let v = m.test(metric.name) { text += " \(metric.name) \(formatted(v, metric))" }
  }
  text +=
    "  NFE \(fixed(m.nfeForward, 1))/\(fixed(m.nfeBackward, 1))  \(fixed(m.seconds, 1)) s  \(fixed(m.samplesPerSecond, 0)) samples/s"
  if m.skippedBatches > 0 { text += "  \(m.skippedBatches) batches skipped (not finite)" }
  return text
}

/// A metric's value as shown: a percentage for fractions.
func formatted(_ value: Double, _ metric: TaskMetric) -> String {
  metric.isFraction ? fixed(100 * value, 2) + "%" : fixed(value, 4)
}

func fixed(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
