import DiffEqNet
import Foundation

extension BenchSolvers {
  /// One default training step of `runner train` (ODE-Net, Dopri5 at rtol = atol = 1e-3, the
  /// backsolve adjoint, batch 64, SGD) through the `Trainer`, on 64 random 1×28×28 images: the
  /// median step time, its evaluations of f, and on an OpenCL backend the kernel launches, host
  /// synchronisations and bytes moved of one step. The weights start fresh, so the solver's step
  /// counts are those of the first steps of a run.
  func trainingStep(on backend: any Backend) throws {
    let reps = max(1, min(options.repetitions, 5))
    var configuration = TrainingConfiguration()
    configuration.epochs = reps + 1
    configuration.batchSize = 64
    configuration.cropPadding = 0
    var rng = RandomState(seed: 11)
    let count = configuration.batchSize
    let data = try ImageDataset(
      name: "random",
      images: (0..<count * 28 * 28).map { _ in UInt8(truncatingIfNeeded: rng.next()) },
      labels: (0..<count).map { _ in Int(rng.next() % 10) }, channels: 1, height: 28, width: 28,
      classes: 10)
    let task = try ImageClassificationTask(configuration, backend: backend, train: data, test: data)
    let trainer = try Trainer(task, configuration: configuration, backend: backend)
    // Each epoch is the one step; the report closure runs right after it (the loss already
    // read), before the epoch's evaluation.
    var times: [Double] = []
    var traffic = DeviceTraffic()
    var evaluations = (forward: 0, backward: 0)
    for epoch in 0...reps {
      let start = DispatchTime.now().uptimeNanoseconds
      let before = backend.traffic
      _ = try trainer.trainEpoch { progress in
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if epoch > 0 { times.append(seconds) }
        traffic = backend.traffic - before
        evaluations = (progress.nfeForward, progress.nfeBackward)
      }
    }
    var fields: [(String, Any)] = [
      ("workload", "train"), ("config", "odenet_dopri5_backsolve_batch64"),
      ("device", backend.name), ("median_s", median(times)), ("nfe_forward", evaluations.forward),
      ("nfe_backward", evaluations.backward),
    ]
    if let openCL = backend as? OpenCLBackend {
      fields += [
        ("launches_per_step", traffic.launches),
        ("host_syncs_per_step", traffic.hostSynchronizations),
        ("bytes_to_device", traffic.bytesToDevice), ("bytes_from_device", traffic.bytesFromDevice),
        (
          "launches_per_nfe",
          Double(traffic.launches) / Double(max(1, evaluations.forward + evaluations.backward))
        ),
        ("gemm", openCL.gemmPath),
      ]
    }
    report(fields)
  }
}
