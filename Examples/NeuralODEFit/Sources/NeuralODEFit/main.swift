// A neural ODE learns a damped spiral, dy/dt = y·A, from 30 samples of one trajectory, training
// through the backsolve adjoint, with DiffEqNet's public API only.
import DiffEqNet
import Foundation

let backend = CPUBackend()
let times = (0..<30).map { Double($0) * 0.1 }
let a = try Tensor([-0.1, -1.0, 1.0, -0.1], shape: [2, 2], dtype: .float64, on: backend)
let truth = VectorField { _, y in try y.matmul(a) }
let y0 = try Tensor([1.0, 0.0], shape: [1, 2], dtype: .float64, on: backend)
let target = try odeint(truth, y0, times: times).trajectory

var rng = RandomState(seed: 0)
let mlp = try MLP([2, 32, 2], activation: .tanh, dtype: .float64, rng: &rng, on: backend)
let optimizer = Adam(learningRate: 0.02)
let options = ODEOptions(solver: .dopri5, rtol: 1e-6, atol: 1e-8)
var first = 0.0
var last = 0.0
for iteration in 1...200 {
  let (loss, gradients) = try valueAndGrad(mlp) {
    let solution = try odeint(
      mlp.vectorField, y0, times: times, options: options, gradient: .backsolve)
    let error = try solution.trajectory - target
    return try (error * error).mean()
  }
  try optimizer.update(mlp, gradients: gradients)
  last = try loss.item()
  if iteration == 1 { first = last }
  if iteration % 40 == 0 { print("iteration \(iteration): mean squared error \(last)") }
}
print("mean squared error \(first) → \(last)")
if !(last < first / 10) {
  print("the fit did not improve tenfold")
  exit(1)
}
