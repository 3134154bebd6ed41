"""torchdeq's time for the DEQ block that `runner bench solvers --workload deq` measures.

A comparison script, not part of the product. The same f as DiffEqNet's `DEQBlock`:

    f(z, x) = GN3(ReLU(z + GN2(x + conv2(GN1(ReLU(conv1(z)))))))

64 channels, GroupNorm(32), 3x3 convolutions without bias drawn from N(0, 0.01^2), batch 64 at
6x6 (the MNIST classifier's shape), x and r from N(0, 1), loss mean(z* r). Anderson (m = 5,
tau = 1) forward, implicit differentiation with Anderson backward. Rows:
  cap30: tolerances that cannot be reached, so both libraries evaluate f exactly 30 times
         forward and solve 30 backward iterations: equal work, the fair time comparison
         (DiffEqNet's row: config=deq_anderson_cap30).
  tol1e-3: relative residual 1e-3 both ways, each library's own iteration counts
         (DiffEqNet's row: config=deq_anderson_implicit).

Each row is printed twice: with PyTorch's defaults (oneDNN convolutions) and with
`torch.backends.mkldnn.enabled = False`, which at this small spatial size can be the faster of the
two on some CPUs; compare against the faster.

Usage (2 threads, interleaved with DiffEqNet's runs in the same minutes):
    pip install torch torchdeq
    for i in 1 2 3; do
      .build/release/runner bench solvers --workload deq --device cpu --json
      python3 scripts/compare/deq_torchdeq.py
    done
"""
import json
import statistics
import time

import torch
from torchdeq import get_deq

torch.set_num_threads(2)
torch.manual_seed(3)


class F(torch.nn.Module):
    def __init__(self, c=64, groups=32):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        for conv in (self.conv1, self.conv2):
            torch.nn.init.normal_(conv.weight, std=0.01)
        self.norm1 = torch.nn.GroupNorm(groups, c)
        self.norm2 = torch.nn.GroupNorm(groups, c)
        self.norm3 = torch.nn.GroupNorm(groups, c)

    def forward(self, z, x):
        y = self.norm1(torch.relu(self.conv1(z)))
        return self.norm3(torch.relu(z + self.norm2(x + self.conv2(y))))


def measure(name, tol, reps=5):
    f = F()
    x = torch.randn(64, 64, 6, 6)
    r = torch.randn(64, 64, 6, 6)
    deq = get_deq(
        f_solver="anderson", f_max_iter=30, f_tol=tol, f_stop_mode="rel",
        b_solver="anderson", b_max_iter=30, b_tol=tol, b_stop_mode="rel", ift=True)
    forward, backward = [], []
    info = None
    for rep in range(reps + 1):
        f.zero_grad()
        t0 = time.perf_counter()
        z_out, info = deq(lambda z: f(z, x), torch.zeros_like(x), solver_kwargs={"m": 5, "tau": 1.0})
        loss = (z_out[-1] * r).mean()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if rep > 0:
            forward.append(t1 - t0)
            backward.append(t2 - t1)
    print(json.dumps({
        "workload": "deq", "library": "torchdeq", "config": name, "batch": 64,
        "onednn": torch.backends.mkldnn.enabled,
        "shape": "64x6x6", "threads": torch.get_num_threads(), "torch": torch.__version__,
        "forward_s": statistics.median(forward), "backward_s": statistics.median(backward),
        "forward_iterations": int(info["nstep"].float().mean().item()),
        "forward_residual": float(info["rel_lowest"].mean().item()),
    }), flush=True)


for onednn in (True, False):
    torch.backends.mkldnn.enabled = onednn
    measure("cap30", 1e-30)
    measure("tol1e-3", 1e-3)
