"""torchdiffeq's time and test NLL for what `runner bench solvers --workload cnf` and
`runner train --model cnf --data two-moons` measure.

A comparison script, not part of the product. FFJORD's formulation (Grathwohl et al. 2019,
`train_toy.py`) in torchdiffeq: the state (z, delta log p), dz/dt = f(t, z) with f 3
ConcatSquash layers of 64 (h W^T + b) * sigmoid(t g + c) + t e with tanh between them, 2 -> 64 ->
64 -> 64 -> 2; d(delta log p)/dt = -tr(df/dz), Hutchinson's e^T (df/dz) e with Rademacher e drawn
once per solve (the VJP e^T df/dz by autograd with create_graph, as FFJORD), or the exact trace
(one VJP per dimension); odeint_adjoint with dopri5 at rtol = atol = 1e-5 from t = 0 to T = 0.5;
log p(x) = log N(z(T); 0, I) - delta log p(T). Adam at 1e-3, no weight decay. Two-moons drawn as
DiffEqNet's ToyDensity draws it (uniform angles, noise 0.1, x2 - (1, 0.2)).

Modes:
  step:  training iterations at batch 512 (a fresh draw each iteration) from fresh weights: the
         median iteration (forward, adjoint backward, Adam update) over --iterations after one
         warm-up, and the mean NFE each way, as `runner bench solvers --workload cnf`.
  train: --iterations iterations at batch 512 on a training set of 10,000 points shuffled per
         epoch (as `runner train --model cnf --data two-moons --batch-size 512`), then the test
         NLL (nats/dim) on 2,000 fresh points by the exact trace, as DiffEqNet reports it.

Usage (2 threads, interleaved with DiffEqNet's runs in the same minutes, under nice):
    python3 scripts/compare/cnf_torchdiffeq.py step --iterations 20
    .build/release/runner bench solvers --workload cnf --device cpu
    python3 scripts/compare/cnf_torchdiffeq.py train --iterations 400
"""
import argparse
import json
import math
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
from torchdiffeq import odeint_adjoint

torch.set_num_threads(2)


class ConcatSquashLinear(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self._layer = nn.Linear(dim_in, dim_out)
        self._hyper_gate = nn.Linear(1, dim_out)
        self._hyper_bias = nn.Linear(1, dim_out, bias=False)

    def forward(self, t, x):
        tt = t.view(1, 1)
        return self._layer(x) * torch.sigmoid(self._hyper_gate(tt)) + self._hyper_bias(tt)


class ODEnet(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.layers = nn.ModuleList(
            [ConcatSquashLinear(a, b) for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, t, x):
        for i, layer in enumerate(self.layers):
            x = layer(t, x)
            if i < len(self.layers) - 1:
                x = torch.tanh(x)
        return x


class ODEfunc(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.e = None  # the probes of the current solve (None: exact trace)
        self.nfe = 0

    def forward(self, t, states):
        self.nfe += 1
        z = states[0]
        with torch.set_grad_enabled(True):
            if not z.requires_grad:
                z = z.requires_grad_(True)
            dz = self.net(t, z)
            if self.e is not None:
                e_dzdx = torch.autograd.grad(dz, z, self.e, create_graph=True)[0]
                div = (e_dzdx * self.e).sum(dim=1)
            else:
                div = 0.0
                for i in range(z.shape[1]):
                    div = div + torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i]
        return dz, -div.view(-1, 1)


class CNF(nn.Module):
    def __init__(self, dims=(2, 64, 64, 64, 2), T=0.5, tol=1e-5):
        super().__init__()
        self.odefunc = ODEfunc(ODEnet(list(dims)))
        self.T = T
        self.tol = tol

    def log_density(self, x, hutchinson=True):
        self.odefunc.e = (torch.randint(0, 2, x.shape).to(x) * 2 - 1) if hutchinson else None
        zero = torch.zeros(x.shape[0], 1).to(x)
        times = torch.tensor([0.0, self.T]).to(x)
        z, delta = odeint_adjoint(
            self.odefunc, (x, zero), times, rtol=self.tol, atol=self.tol, method="dopri5",
            adjoint_params=tuple(self.odefunc.parameters()))
        z, delta = z[-1], delta[-1]
        logpz = -0.5 * (z ** 2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
        return logpz - delta.view(-1)


def two_moons(n, rng):
    a = math.pi * rng.random(n)
    outer = np.arange(n) % 2 == 0
    x = np.where(outer, np.cos(a), 1 - np.cos(a))
    y = np.where(outer, np.sin(a), 1 - np.sin(a) - 0.5)
    x = 2 * (x + 0.1 * rng.standard_normal(n)) - 1
    y = 2 * (y + 0.1 * rng.standard_normal(n)) - 0.2
    return np.stack([x, y], 1).astype(np.float32)


def iteration(model, optimizer, x, hutchinson):
    odefunc = model.odefunc
    odefunc.nfe = 0
    optimizer.zero_grad()
    loss = -model.log_density(x, hutchinson).mean() / x.shape[1]
    forward = odefunc.nfe
    loss.backward()
    optimizer.step()
    return loss.item(), forward, odefunc.nfe - forward


def test_nll(model, x, batch=512):
    total = 0.0
    for i in range(0, len(x), batch):
        total += -model.log_density(x[i:i + batch], hutchinson=False).sum().item()
    return total / (len(x) * x.shape[1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["step", "train"])
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--trace", choices=["hutchinson", "exact"], default="hutchinson")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    model = CNF()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    hutchinson = a.trace == "hutchinson"
    if a.mode == "step":
        times, fwd, bwd = [], 0, 0
        for i in range(a.iterations + 1):
            x = torch.from_numpy(two_moons(512, rng))
            start = time.perf_counter()
            loss, f, b = iteration(model, optimizer, x, hutchinson)
            if i > 0:
                times.append(time.perf_counter() - start)
                fwd += f
                bwd += b
        print(json.dumps({
            "library": "torchdiffeq", "workload": "cnf", "config": f"two_moons_{a.trace}",
            "batch": 512, "median_s": statistics.median(times), "iterations": a.iterations,
            "nfe_forward": fwd / a.iterations, "nfe_backward": bwd / a.iterations,
            "final_nll": loss, "torch": torch.__version__}))
    else:
        train = torch.from_numpy(two_moons(10000, rng))
        test = torch.from_numpy(two_moons(2000, rng))
        done = 0
        start = time.perf_counter()
        while done < a.iterations:
            order = torch.from_numpy(rng.permutation(len(train)))
            for i in range(0, len(train), 512):
                if done == a.iterations:
                    break
                iteration(model, optimizer, train[order[i:i + 512]], hutchinson)
                done += 1
        seconds = time.perf_counter() - start
        print(json.dumps({
            "library": "torchdiffeq", "mode": "train", "iterations": done, "trace": a.trace,
            "seconds": seconds, "test_nll": test_nll(model, test)}))


if __name__ == "__main__":
    main()
