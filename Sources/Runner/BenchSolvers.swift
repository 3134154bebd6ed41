import ArgumentParser
import DiffEqNet
import Foundation

/// `runner bench solvers`: the cost of forward solves and adjoint gradients on two ODE workloads,
/// the MNIST ODE-Net's vector field ("odeblock") and torchdiffeq's spiral demo ("spiral"), of
/// the DEQ variants' solves ("deq"), the delay blocks' solves and adjoints ("dde"), one default
/// training step ("train"), the CIFAR ResNets' training steps ("lmresnet") and a latent ODE's
/// ("latent"); on an OpenCL
/// backend also what they ask of the device (kernel launches, host synchronisations).
struct BenchSolvers: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "solvers",
    abstract:
      "Measure ODE solves, adjoint gradients, DEQ and DDE solves and training steps (odeblock, spiral, deq, dde, train, lmresnet, cnf, latent).",
    discussion: """
      odeblock: f(t,h) = GN(convT(relu(GN(convT(t, relu(GN(h))))))), 64 channels + a time \
      channel, GroupNorm(32), batch 32, 14x14, t in [0, 1]. Configurations: rk4_forward \
      (10 steps), rk4_adjoint (forward + backsolve backward of sum(h(1)^2)), dopri5_adjoint \
      (rtol = atol = 1e-3, seminorm), and peak pool bytes for RK4 at 10/40/160 steps with direct \
      backpropagation versus the adjoint.
      spiral: torchdiffeq's ode_demo (dy/dt = (y^3)A, 1000 points on [0, 25]; \
      f(y) = Linear(50->2)(tanh(Linear(2->50)(y^3))); batches of 20 windows of 10 points; \
      dopri5 rtol 1e-7 atol 1e-9 with the backsolve adjoint; RMSprop lr 1e-3): the median time \
      per training iteration and the final loss.
      deq: the DEQ block of the deq, cdeq and Skip models (64 channels, 6x6, batch 64, fresh \
      weights, a random input), loss mean(z* r): per variant the median forward solve and \
      backward solve + VJP times, evaluations of f and final residuals; deq_anderson_cap30 does \
      exactly 30 evaluations each way (scripts/compare/deq_torchdeq.py times the same in \
      torchdeq).
      dde: the ddnn-a and ddnn-b blocks (batch 64, 64 channels, 6x6, tau = 0.5, RK4 with 4 \
      steps) with the segment adjoint and with direct backpropagation: forward and backward \
      times, NFE, peak pool bytes; mackey_glass_mlp_{adjoint,direct}: one training iteration \
      of dx/dt = MLP([x(t), x(t-17)]) (2->64->64->1 tanh, batch 32 windows, history from the \
      true series, 34 units ahead at unit spacing, RK4 step 1, MSE, Adam; \
      scripts/compare/dde_torchdde.py times the same in torchdde); dde_adjoint_memory: peak pool \
      bytes at 4, 16 and 64 tau-segments, adjoint and direct, conv and MLP fields.
      train: one default `runner train` step (odenet, dopri5 rtol = atol = 1e-3, backsolve \
      adjoint, batch 64, SGD) through the Trainer on random 1x28x28 images: the median step \
      time and its evaluations of f.
      On an OpenCL device, odeblock and train rows also give the step's kernel launches and host \
      synchronisations (launches_per_nfe, host_syncs_per_step; train: launches_per_step and the \
      bytes moved each way); gemm=kernel marks counts that hold on every OpenCL device \
      (--opencl-gemm-kernel on a CPU device; a GPU always).
      lmresnet: one SGD training step (forward, cross-entropy, backward, update) of resnet20 \
      and lmresnet20 (survival 1, and lmresnet20_sd with survival 0.5) at batch 128 on 1x28x28 \
      and 3x32x32 random images (scripts/compare/lmresnet_torch.py times the same in PyTorch).
      cnf: training iterations of a continuous normalizing flow on two-moons (batch 512, 3 \
      ConcatSquash layers of 64, tanh, T = 0.5, dopri5 rtol = atol = 1e-5, backsolve adjoint, \
      Adam 1e-3), Hutchinson (Rademacher) and exact trace: the median iteration over \
      --cnf-iterations from fresh weights and the mean NFE (scripts/compare/cnf_torchdiffeq.py \
      and cnf_diffrax.py time the same).
      latent: one training iteration of the latent ODE on 100 spirals (latent dimension 4, \
      width 25, dopri5 rtol = atol = 1e-3, Adam), backsolve adjoint and direct: the median step \
      time and its evaluations of f.
      Before and after the workloads a reference line (workload=reference, config=sgemm_1024) \
      gives OpenBLAS sgemm's rate in those minutes: read the times against it on a machine whose \
      speed drifts.
      """)

  @OptionGroup var options: BenchOptions

  /// What `--workload` selects.
  enum Workload: String, CaseIterable, ExpressibleByArgument {
    case odeblock, spiral, deq, dde, train, lmresnet, cnf, latent, all
  }

  @Option(
    help:
      "Which workloads to run: odeblock, spiral, deq, dde, train, lmresnet, cnf, latent or all.")
  var workload = Workload.all

  @Option(help: "Training iterations of the spiral workload (and of dde's Mackey-Glass rows).")
  var iterations = 200

  @Option(help: "Training iterations of the cnf workload (after one warm-up).")
  var cnfIterations = 20

  @Option(
    help: """
      Which odeblock measurements to run: all, or a comma-separated list of rk4_forward, \
      rk4_adjoint, dopri5_adjoint, memory (the 10/40/160-step peak-memory runs, the slowest).
      """)
  var only = "all"

  static let odeblockGroups = ["rk4_forward", "rk4_adjoint", "dopri5_adjoint", "memory"]

  func validate() throws {
    _ = try selectedGroups(only, of: Self.odeblockGroups)
    guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
    guard cnfIterations >= 1 else { throw ValidationError("--cnf-iterations must be at least 1") }
  }

  func run() throws {
    try reportReference()
    for backend in try options.backends() {
      if [.odeblock, .all].contains(workload) { try odeblock(on: backend) }
      if [.spiral, .all].contains(workload) { try spiral(on: backend) }
      if [.deq, .all].contains(workload) { try deq(on: backend) }
      if [.dde, .all].contains(workload) { try dde(on: backend) }
      if [.train, .all].contains(workload) { try trainingStep(on: backend) }
      if [.lmresnet, .all].contains(workload) { try lmresnet(on: backend) }
      if [.cnf, .all].contains(workload) { try cnf(on: backend) }
      if [.latent, .all].contains(workload) { try latent(on: backend) }
    }
    try reportReference()
  }

  /// OpenBLAS sgemm at 1024, before and after the workloads: the machine's speed in the minutes
  /// they ran (it drifts by up to 1.6×), to read their times against.
  func reportReference() throws {
    let m = try measureGEMM(CPUBackend(), n: 1024, repetitions: options.repetitions)
    report([
      ("workload", "reference"), ("config", "sgemm_1024"), ("device", m.device),
      ("median_s", m.medianSeconds), ("gflops", m.gflops ?? 0),
    ])
  }

  func report(_ fields: [(String, Any)]) {
    if options.json {
      print(formatJSONLine(fields))
    } else {
      print(
        fields.map { key, value in
          let v = (value as? Double).map { String(format: "%.4g", $0) } ?? "\(value)"
          return "\(key)=\(v)"
        }.joined(separator: "  "))
    }
    fflush(nil)  // all streams: results appear as they are measured, even through a pipe
  }

  // MARK: odeblock

  func odeblock(on backend: any Backend) throws {
    var rng = RandomState(seed: 7)
    let f = try ConvODEFunction(channels: 64, rng: &rng, on: backend)
    let h0 = try Tensor.normal([32, 64, 14, 14], rng: &rng, on: backend)
    let reps = max(1, min(options.repetitions, 5))

    func run(_ solverOptions: ODEOptions, gradient: GradientMethod?) throws -> (
      Double, ODEStatistics, Int, DeviceTraffic
    ) {
      var stats = ODEStatistics()
      backend.pool.resetPeak()
      let base = backend.pool.currentBytes
      var traffic = DeviceTraffic()
      let t = try medianTime(repetitions: reps) {
        let before = backend.traffic
        defer { traffic = backend.traffic - before }
        if let gradient {
          let (loss, _) = try valueAndGrad(f) {
            let sol = try odeint(
              f.field, h0, times: [0, 1], options: solverOptions, gradient: gradient)
            stats = sol.statistics
            return try sol.states[1].square().sum()
          }
          _ = try loss.item()
        } else {
          let sol = try odeint(f.field, h0, times: [0, 1], options: solverOptions)
          stats = sol.statistics
          try backend.synchronize()
        }
      }
      return (t, stats, backend.pool.peakBytes - base, traffic)
    }

    func emit(_ config: String, steps: Int, _ r: (Double, ODEStatistics, Int, DeviceTraffic?)) {
      var fields: [(String, Any)] = [
        ("workload", "odeblock"), ("config", config), ("steps", steps), ("device", backend.name),
        ("median_s", r.0), ("nfe_forward", r.1.forwardEvaluations),
        ("nfe_backward", r.1.backwardEvaluations), ("peak_bytes", r.2),
      ]
      if let traffic = r.3 { fields += trafficFields(traffic, of: r.1, on: backend) }
      report(fields)
    }
    let groups = try selectedGroups(only, of: Self.odeblockGroups)
    let rk4 = ODEOptions.fixed(.rk4, steps: 10)
    if groups.contains("rk4_forward") {
      emit("rk4_forward", steps: 10, try run(rk4, gradient: nil))
    }
    if groups.contains("rk4_adjoint") {
      emit("rk4_adjoint", steps: 10, try run(rk4, gradient: .backsolve))
    }
    if groups.contains("dopri5_adjoint") {
      let dopri = ODEOptions(solver: .dopri5, rtol: 1e-3, atol: 1e-3)
      let d = try run(dopri, gradient: .backsolve)
      emit("dopri5_adjoint", steps: d.1.acceptedSteps + d.1.rejectedSteps, d)
    }
    for steps in [10, 40, 160] where groups.contains("memory") {
      for (config, method) in [
        ("rk4_direct_memory", GradientMethod.direct), ("rk4_adjoint_memory", .backsolve),
      ] {
        // Direct backpropagation through 160 RK4 steps holds every activation: skip what would
        // not fit comfortably in this machine's memory rather than swap.
        if method == .direct && steps > 40 && backend is CPUBackend == false { continue }
        var stats = ODEStatistics()
        backend.pool.resetPeak()
        let base = backend.pool.currentBytes
        let start = DispatchTime.now().uptimeNanoseconds
        let (loss, _) = try valueAndGrad(f) {
          let sol = try odeint(
            f.field, h0, times: [0, 1], options: .fixed(.rk4, steps: steps), gradient: method)
          stats = sol.statistics
          return try sol.states[1].square().sum()
        }
        _ = try loss.item()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        emit(config, steps: steps, (seconds, stats, backend.pool.peakBytes - base, nil))
      }
    }
  }

  /// What one solve asked of the device, per evaluation of f and per solver step (forward and
  /// backward together), for a backend that counts it (OpenCL); none for the CPU backend.
  func trafficFields(
    _ traffic: DeviceTraffic, of statistics: ODEStatistics, on backend: any Backend
  )
    -> [(String, Any)]
  {
    guard let openCL = backend as? OpenCLBackend else { return [] }
    let evaluations = statistics.forwardEvaluations + statistics.backwardEvaluations
    let steps =
      statistics.acceptedSteps + statistics.rejectedSteps + statistics.backwardAcceptedSteps
      + statistics.backwardRejectedSteps
    return [
      ("launches", traffic.launches), ("host_syncs", traffic.hostSynchronizations),
      ("launches_per_nfe", Double(traffic.launches) / Double(max(1, evaluations))),
      ("host_syncs_per_step", Double(traffic.hostSynchronizations) / Double(max(1, steps))),
      ("gemm", openCL.gemmPath),
    ]
  }

  // MARK: spiral

  func spiral(on backend: any Backend) throws {
    let data = try SpiralData(on: backend)
    var rng = RandomState(seed: 0)
    let model = try SpiralField(rng: &rng, on: backend)
    let optimizer = RMSprop(learningRate: 1e-3)
    backend.pool.resetPeak()  // this workload's peak, not the odeblock's before it
    let options = ODEOptions(solver: .dopri5, rtol: 1e-7, atol: 1e-9)
    var times: [Double] = []
    var loss = 0.0
    var nfeForward = 0
    var nfeBackward = 0
    for _ in 0..<iterations {
      let start = DispatchTime.now().uptimeNanoseconds
      let (y0, targets) = try data.batch(&rng)
      var stats = ODEStatistics()
      // The demo's loss: the mean absolute error over the whole predicted trajectory.
      let (value, grads) = try valueAndGrad(model) {
        let sol = try odeint(
          model.field, y0, times: data.batchTimes, options: options, gradient: .backsolve)
        stats = sol.statistics
        return try (sol.trajectory - targets).abs().mean()
      }
      try optimizer.update(model, gradients: grads)
      loss = try value.item()
      times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
      nfeForward = stats.forwardEvaluations
      nfeBackward = stats.backwardEvaluations
    }
    report([
      ("workload", "spiral"), ("config", "spiral_iteration"), ("steps", iterations),
      ("device", backend.name), ("median_s", median(times)), ("nfe_forward", nfeForward),
      ("nfe_backward", nfeBackward), ("peak_bytes", backend.pool.peakBytes), ("loss", loss),
    ])
  }
}

/// torchdiffeq's ode_demo model: f(y) = Linear(50→2)(tanh(Linear(2→50)(y³))), an `MLP` after
/// the cube. Its adjoint uses the MLP's tape-free VJP and the chain rule through y³.
final class SpiralField: Module {
  let net: MLP

  init(rng: inout RandomState, on backend: any Backend) throws {
    net = try MLP([2, 50, 2], activation: .tanh, rng: &rng, on: backend)
    super.init()
  }

  var field: VectorField {
    VectorField(
      parameters: self, { [unowned self] _, y in try net(y.square() * y) },
      vectorJacobian: { [unowned self] _, y, a in
        let square = try y.square()
        let (value, du, dtheta) = try net.vectorJacobian(at: square * y, cotangent: a)
        return (value, try du * square.affine(scale: 3), dtheta)
      })
  }
}

/// The demo's data: the true spiral dy/dt = (y³)A from y0 = [2, 0] at 1000 times on [0, 25].
struct SpiralData {
  let trajectory: [[Double]]
  let times: [Double]
  let backend: any Backend
  var batchTimes: [Double] { Array(times[0..<10]) }

  init(on backend: any Backend) throws {
    self.backend = backend
    let cpu = CPUBackend()
    times = (0..<1000).map { 25 * Double($0) / 999 }
    let a = try Tensor([-0.1, 2.0, -2.0, -0.1], shape: [2, 2], dtype: .float64, on: cpu)
    let y0 = try Tensor([2, 0], shape: [1, 2], dtype: .float64, on: cpu)
    let truth = VectorField { _, y in try (y.square() * y).matmul(a) }
    let sol = try odeint(
      truth, y0, times: times, options: ODEOptions(solver: .dopri5, rtol: 1e-9, atol: 1e-10))
    trajectory = try sol.states.map { try $0.toDoubles() }
  }

  /// 20 windows of 10 consecutive points: their starts [20, 2] and the targets [10, 20, 2] (time
  /// first, as `ODESolution.trajectory`).
  func batch(_ rng: inout RandomState) throws -> (Tensor, Tensor) {
    let starts = (0..<20).map { _ in Int(rng.next() % UInt64(times.count - 10)) }
    let y0 = try Tensor(starts.flatMap { trajectory[$0] }, shape: [20, 2], on: backend)
    let targets = (0..<10).flatMap { i in starts.flatMap { trajectory[$0 + i] } }
    return (y0, try Tensor(targets, shape: [10, 20, 2], on: backend))
  }
}

extension OpenCLBackend {
  /// How this backend runs GEMM, for benchmark rows: OpenBLAS on a CPU device's mapped buffers
  /// adds host syncs a GPU does not have, while the counts with the kernel
  /// (`--opencl-gemm-kernel`) are the same on every device.
  var gemmPath: String { usesBLASForGEMM ? "blas_mapped" : "kernel" }
}
