"""torchdde's time for the Mackey-Glass training iteration that `runner bench solvers
--workload dde` measures (its rows config=mackey_glass_mlp_adjoint / _direct).

A comparison script, not part of the product. The problem (issue 17's target):
  dx/dt = MLP([x(t), x(t - 17)]), MLP 2 -> 64 -> 64 -> 1 with tanh, float32;
  the Mackey-Glass series (beta 0.2, gamma 0.1, n 10, tau 17, x = 1.2 before 0), integrated on
  the host by RK4 with step 0.1 as DiffEqNet's `MackeyGlass.series`, sampled at unit spacing
  after a transient of 300;
  a batch of 32 windows: each starts at a time s with 17 units of true past, its history is the
  true series (linearly interpolated), its target the 35 true values x(s), ..., x(s + 34);
  RK4 with dt = 1 (ConstantStepSizeController), MSE over the 35 outputs, Adam lr 1e-3.
Rows: torchdde's continuous adjoint (discretize_then_optimize=False) and its backpropagation
through the solver (discretize_then_optimize=True). Also printed: the cosine between the two
paths' parameter gradients at the first iteration (0.007 was measured before by the issue's
author: torchdde 0.1.3's adjoint builds its parameter increments from the saved parameter values).

Usage (2 threads, interleaved with DiffEqNet's runs in the same minutes):
    pip install torchdde
    for i in 1 2 3; do
      .build/release/runner bench solvers --workload dde --device cpu --iterations 50 --json \
        | grep mackey_glass
      python3 scripts/compare/dde_torchdde.py --iterations 50
    done
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch
import torchdde

torch.set_num_threads(2)


def mackey_glass(count, transient=300, spacing=1.0, substeps=10, beta=0.2, gamma=0.1, n=10.0,
                 tau=17.0, x0=1.2):
    h = spacing / substeps
    lag = tau / h
    path = [x0]

    def past(k):
        if k <= 0:
            return x0
        i = int(k)
        w = k - i
        return path[i] if w == 0 else (1 - w) * path[i] + w * path[min(i + 1, len(path) - 1)]

    def f(x, xd):
        return beta * xd / (1 + xd ** n) - gamma * x

    skip = int(round(transient / spacing))
    for k in range((skip + count - 1) * substeps):
        x = path[k]
        d0, dm, d1 = past(k - lag), past(k + 0.5 - lag), past(k + 1 - lag)
        k1 = f(x, d0)
        k2 = f(x + 0.5 * h * k1, dm)
        k3 = f(x + 0.5 * h * k2, dm)
        k4 = f(x + h * k3, d1)
        path.append(x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
    return np.array([path[i * substeps] for i in range(skip, skip + count)])


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 1))
        self.delays = torch.tensor([17.0])

    def forward(self, t, z, args, *, history):
        return self.net(torch.cat([z, history[0]], dim=-1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()

    series = mackey_glass(600)
    rng = np.random.default_rng(21)
    starts = 17 + rng.integers(0, 600 - 17 - 35, size=32)
    horizon = 34
    series_t = torch.tensor(series, dtype=torch.float32)
    starts_t = torch.tensor(starts, dtype=torch.float32)
    target = torch.stack([series_t[starts + u] for u in range(horizon + 1)], dim=1)[..., None]

    def history(t):  # the true series at s + t, linearly interpolated: [32, 1]
        x = starts_t + t
        i = torch.floor(x).long()
        w = (x - i.to(x.dtype))
        return ((1 - w) * series_t[i] + w * series_t[torch.clamp(i + 1, max=len(series) - 1)])[
            :, None]

    ts = torch.arange(0, horizon + 1, dtype=torch.float32)
    first_grads = {}
    for dto in [False, True]:
        torch.manual_seed(11)
        model = Field()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        loss_value = None
        for it in range(args.iterations + 1):
            start = time.perf_counter()
            optimizer.zero_grad()
            ys = torchdde.integrate(
                model, torchdde.RK4(), ts[0], ts[-1], ts, history, None,
                stepsize_controller=torchdde.ConstantStepSizeController(),
                dt0=torch.tensor(1.0), delays=model.delays, discretize_then_optimize=dto,
                max_steps=10000)
            loss = torch.mean((ys - target) ** 2)
            loss.backward()
            if it == 0:
                first_grads[dto] = torch.cat([p.grad.flatten() for p in model.parameters()])
            optimizer.step()
            loss_value = loss.item()
            if it > 0:  # the first is a warm-up
                times.append(time.perf_counter() - start)
        print(json.dumps({
            "library": "torchdde " + torchdde.__version__,
            "config": "mackey_glass_mlp_" + ("discretize_then_optimize" if dto else "adjoint"),
            "threads": torch.get_num_threads(), "iterations": args.iterations,
            "median_iteration_s": statistics.median(times), "final_loss": loss_value,
        }), flush=True)
    a, d = first_grads[False], first_grads[True]
    print(json.dumps({
        "library": "torchdde " + torchdde.__version__,
        "config": "adjoint_vs_discretize_then_optimize",
        "gradient_cosine": float(torch.nn.functional.cosine_similarity(a, d, dim=0)),
        "relative_difference": float(torch.linalg.norm(a - d) / torch.linalg.norm(d)),
    }), flush=True)


if __name__ == "__main__":
    main()
