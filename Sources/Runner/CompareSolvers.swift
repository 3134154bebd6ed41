import ArgumentParser
import DiffEqNet
import Foundation

/// `runner compare-solvers`: the NAG paper's comparison ("On Tuning Neural ODE for Stability,
/// Consistency and Faster Convergence"): the same model trained with each solver on each kind
/// of task, by the same `runner train` path a user runs, one run folder per pair, summarised in
/// one table.
struct CompareSolvers: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "compare-solvers",
    abstract: "Train the same models with each solver and tabulate accuracy, time and NFE.",
    discussion: """
      For each task and each solver, `runner train` runs with that solver (same seed, data and \
      budget) into <out>/<task>-<solver>. The table (<out>/solvers.md and solvers.json) gives \
      per pair the final test metric, the training seconds until the test metric first met the \
      task's target (checked after each epoch; "-" if never), and the mean evaluations of f per \
      batch in the last epoch (forward + backward). Tasks: odenet (ODE-Net on the bundled MNIST \
      subset, test accuracy), cnf (a continuous normalizing flow on two-moons, test NLL in nats \
      per dimension), latent-ode (a latent ODE on spirals, test extrapolation MSE). The budget \
      flags below apply to every run; a short version: --epochs 1 --limit 512.
      """)

  /// A kind of task the comparison trains on.
  enum Task: String, CaseIterable, ExpressibleByArgument {
    case odenet, cnf
    case latentODE = "latent-ode"

    /// The `runner train` flags that set the task up.
    var trainArguments: [String] {
      switch self {
      case .odenet: ["--model", "odenet"]
      // FFJORD's recipe and the latent-ODE example's (README's commands for them): Adam at a
      // constant rate without weight decay, not ODE-Net's SGD schedule.
      case .cnf:
        [
          "--model", "cnf", "--data", "two-moons", "--optimizer", "adam", "--lr", "1e-3",
          "--weight-decay", "0", "--schedule", "constant", "--warmup-steps", "0", "--batch-size",
          "512",
        ]
      case .latentODE:
        [
          "--model", "latent-ode", "--data", "spirals", "--optimizer", "adam", "--lr", "0.01",
          "--width", "25", "--weight-decay", "0", "--schedule", "constant", "--warmup-steps", "0",
          "--batch-size", "50",
        ]
      }
    }

    /// The test metric compared, as `EpochMetrics.test` names it, and its better direction.
    var metric: (name: String, higherIsBetter: Bool) {
      switch self {
      case .odenet: ("accuracy", true)
      case .cnf: ("NLL", false)
      case .latentODE: ("extrapolationMSE", false)
      }
    }

    /// The metric value whose first crossing times a run, unless `--target` sets another.
    var defaultTarget: Double {
      switch self {
      case .odenet: 0.9
      case .cnf: 1.5
      case .latentODE: 0.5
      }
    }
  }

  @Option(
    parsing: .upToNextOption,
    help: "Tasks to train on: odenet, cnf, latent-ode (default: all three).")
  var tasks: [Task] = Task.allCases

  @Option(
    parsing: .upToNextOption,
    help: "Solvers to compare (default: euler midpoint rk4 nag:0.5 nag:0.9 dopri5).",
    transform: ODESolver.init(parsing:))
  var solvers: [ODESolver] = [
    .euler, .midpoint, .rk4, .nag(momentum: 0.5), .nag(momentum: 0.9), .dopri5,
  ]

  @Option(
    parsing: .upToNextOption,
    help: """
      Target metric per task, as task=value (odenet=0.9 cnf=1.5 latent-ode=0.5 by default): \
      accuracy to reach, NLL or MSE to get below.
      """)
  var target: [String] = []

  @Option(help: "Epochs of every run.") var epochs = 2
  @Option(help: "Training examples (images, points, series) of every run; 0 for all.")
  var limit = 0
  @Option(help: "Steps over [0, 1] of the fixed-step solvers.") var rkSteps = 4
  @Option(help: "Device of every run: auto, cpu, opencl, opencl:N.") var device = "auto"
  @Option(help: "Seed of every run.") var seed: UInt64 = 0
  @Option(help: "Folder of the runs and the table.") var out = "runs/compare-solvers"

  func validate() throws {
    guard !tasks.isEmpty, !solvers.isEmpty else {
      throw ValidationError("--tasks and --solvers need at least one value each")
    }
    _ = try targets()
    // Every run's flags must parse and validate before the first run starts.
    for task in tasks {
      for solver in solvers {
        _ = try Train.parse(trainArguments(task, solver)).resolvedConfiguration(readingSaved: false)
      }
    }
  }

  /// Each task's target: its default unless `--target task=value` sets it.
  func targets() throws -> [Task: Double] {
    var result = Dictionary(uniqueKeysWithValues: Task.allCases.map { ($0, $0.defaultTarget) })
    for spec in target {
      let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
      guard parts.count == 2, let task = Task(rawValue: parts[0]), let value = Double(parts[1]),
        value.isFinite
      else {
        throw ValidationError(
          "--target \(spec): expected task=value with a task among \(Task.allCases.map(\.rawValue)) and a finite number"
        )
      }
      result[task] = value
    }
    return result
  }

  func folder(_ task: Task, _ solver: ODESolver) -> URL {
    URL(fileURLWithPath: out).appendingPathComponent(
      "\(task.rawValue)-\(solver.description.replacingOccurrences(of: ":", with: "-"))")
  }

  func trainArguments(_ task: Task, _ solver: ODESolver) -> [String] {
    task.trainArguments + [
      "--solver", solver.description, "--epochs", String(epochs), "--limit", String(limit),
      "--rk-steps", String(rkSteps), "--device", device, "--seed", String(seed), "--out",
      folder(task, solver).path,
    ]
  }

  func run() throws {
    let targets = try targets()
    var rows: [SolverComparisonRow] = []
    for task in tasks {
      for solver in solvers {
        print("== \(task.rawValue) with \(solver) ==")
        try FileManager.default.removeItemIfPresent(at: folder(task, solver))
        try Train.parse(trainArguments(task, solver)).run()
        let history = try readMetrics(folder(task, solver).appendingPathComponent("metrics.jsonl"))
        rows.append(
          SolverComparisonRow(
            task: task, solver: solver, history: history, target: targets[task] ?? .nan))
      }
    }
    let table = SolverComparisonRow.markdown(rows)
    print(table)
    let base = URL(fileURLWithPath: out)
    try table.write(
      to: base.appendingPathComponent("solvers.md"), atomically: true, encoding: .utf8)
    try writeJSON(rows, to: base.appendingPathComponent("solvers.json"))
    print("wrote \(base.appendingPathComponent("solvers.md").path) and solvers.json")
  }
}

/// One (task, solver) run of `runner compare-solvers`, as its table and JSON give it.
struct SolverComparisonRow: Encodable {
  var task: String
  var solver: String
  var metric: String
  var target: Double
  /// The test metric after the last epoch.
  var finalMetric: Double?
  /// Training seconds (summed over epochs) until the test metric first met the target.
  var secondsToTarget: Double?
  var trainingSeconds: Double
  /// Mean evaluations of f per batch in the last epoch, forward and backward.
  var nfeForward: Double
  var nfeBackward: Double

  init(task: CompareSolvers.Task, solver: ODESolver, history: [EpochMetrics], target: Double) {
    self.task = task.rawValue
    self.solver = solver.description
    self.metric = task.metric.name
    self.target = target
    finalMetric = history.last?.test(task.metric.name)
    var elapsed = 0.0
    for epoch in history {
      elapsed += epoch.seconds
      guard secondsToTarget == nil, let value = epoch.test(task.metric.name) else { continue }
      if task.metric.higherIsBetter ? value >= target : value <= target {
        secondsToTarget = elapsed
      }
    }
    trainingSeconds = elapsed
    nfeForward = history.last?.nfeForward ?? 0
    nfeBackward = history.last?.nfeBackward ?? 0
  }

  static func markdown(_ rows: [Self]) -> String {
    func figure(_ x: Double?, _ format: String) -> String {
      x.map { String(format: format, $0) } ?? "-"
    }
    var lines = [
      "| task | solver | test metric | final | target | s to target | training s | NFE fwd | NFE bwd |",
      "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows {
      lines.append(
        "| \(r.task) | \(r.solver) | \(r.metric) | \(figure(r.finalMetric, "%.4f")) | \(figure(r.target, "%g")) | \(figure(r.secondsToTarget, "%.1f")) | \(figure(r.trainingSeconds, "%.1f")) | \(figure(r.nfeForward, "%.1f")) | \(figure(r.nfeBackward, "%.1f")) |"
      )
    }
    return lines.joined(separator: "\n") + "\n"
  }
}

extension FileManager {
  /// Removes `url` if it exists, so that a comparison never resumes or mixes an earlier run's
  /// metrics.
  func removeItemIfPresent(at url: URL) throws {
    if fileExists(atPath: url.path) { try removeItem(at: url) }
  }
}
