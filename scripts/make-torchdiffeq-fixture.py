#!/usr/bin/env python3
# Makes the committed test fixture Tests/Fixtures/torchdiffeq-odenet/: a small (width 8) copy of
# torchdiffeq's MNIST ODE-Net (examples/odenet_mnist.py, --network odenet --downsampling-method conv),
# its weights, 16 real MNIST test images from data/mnist-5k and the logits torchdiffeq computes for
# them with odeint(method='rk4', options=dict(step_size=0.25)), so the Swift side can check that it
# reproduces torchdiffeq's ODE-Net to 1e-4.
#
# PyTorch and torchdiffeq are used to MAKE the fixture only; DiffEqNet neither builds nor tests
# against them, and the fixture files are committed, so nobody needs them unless regenerating.
#
# Needs (PyPI): torch (the CPU build is enough), torchdiffeq, safetensors, numpy.
#   pip install torch torchdiffeq safetensors numpy
#
# Usage (from anywhere): python3 scripts/make-torchdiffeq-fixture.py
#
# Writes:
#   Tests/Fixtures/torchdiffeq-odenet/weights.safetensors   the model's state_dict, exactly
#   Tests/Fixtures/torchdiffeq-odenet/expected.safetensors  images, labels, logits, logits_classic_rk4,
#                                                            ode_input, ode_output
# Deterministic: torch.manual_seed(0), float32, single-threaded CPU.
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torchdiffeq
from safetensors.torch import load_file, save_file
from torchdiffeq import odeint

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT_DIR = os.path.join(ROOT, "Tests", "Fixtures", "torchdiffeq-odenet")
IMAGES = os.path.join(ROOT, "data", "mnist-5k", "t10k-images-idx3-ubyte.gz")
LABELS = os.path.join(ROOT, "data", "mnist-5k", "t10k-labels-idx1-ubyte.gz")

WIDTH = 8          # channels (the example uses 64); GroupNorm(min(32, 8), 8): 8 groups of 1 channel
COUNT = 16         # first 16 test images
STEP_SIZE = 0.25   # 4 fixed RK4 steps over [0, 1]


# ---- the model, as in torchdiffeq/examples/odenet_mnist.py ---------------------------------------

def norm(dim):
    return nn.GroupNorm(min(32, dim), dim)  # eps = 1e-5 (torch default), affine


class ConcatConv2d(nn.Module):
    def __init__(self, dim_in, dim_out, ksize=3, stride=1, padding=0):
        super().__init__()
        self._layer = nn.Conv2d(dim_in + 1, dim_out, kernel_size=ksize, stride=stride, padding=padding)

    def forward(self, t, x):
        tt = torch.ones_like(x[:, :1, :, :]) * t
        ttx = torch.cat([tt, x], 1)  # time channel FIRST
        return self._layer(ttx)


class ODEfunc(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1 = norm(dim)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = ConcatConv2d(dim, dim, 3, 1, 1)
        self.norm2 = norm(dim)
        self.conv2 = ConcatConv2d(dim, dim, 3, 1, 1)
        self.norm3 = norm(dim)
        self.nfe = 0

    def forward(self, t, x):
        self.nfe += 1
        out = self.norm1(x)
        out = self.relu(out)
        out = self.conv1(t, out)
        out = self.norm2(out)
        out = self.relu(out)
        out = self.conv2(t, out)
        out = self.norm3(out)
        return out


class ODEBlock(nn.Module):
    def __init__(self, odefunc):
        super().__init__()
        self.odefunc = odefunc
        self.integration_time = torch.tensor([0, 1]).float()
        self.solver = "torchdiffeq"  # or "classic": the hand-written classic RK4 below

    def forward(self, x):
        t = self.integration_time.type_as(x)
        if self.solver == "classic":
            return classic_rk4(self.odefunc, x, t[0], t[1], STEP_SIZE)
        out = odeint(self.odefunc, x, t, method="rk4", options=dict(step_size=STEP_SIZE))
        return out[1]


class Flatten(nn.Module):
    def forward(self, x):
        shape = torch.prod(torch.tensor(x.shape[1:])).item()
        return x.view(-1, shape)


def make_model(width):
    downsampling_layers = [
        nn.Conv2d(1, width, 3, 1),
        norm(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 4, 2, 1),
        norm(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 4, 2, 1),
    ]
    feature_layers = [ODEBlock(ODEfunc(width))]
    fc_layers = [norm(width), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)), Flatten(), nn.Linear(width, 10)]
    return nn.Sequential(*downsampling_layers, *feature_layers, *fc_layers)


# ---- solvers written out by hand ------------------------------------------------------------------

def step_times(t0, t1, h):
    n = int(round(float((t1 - t0) / h)))
    return [t0 + (t1 - t0) * i / n for i in range(n + 1)]


def classic_rk4(f, y, t0, t1, h):
    """Classic RK4: c = (0, 1/2, 1/2, 1), b = (1/6, 1/3, 1/3, 1/6)."""
    ts = step_times(t0, t1, h)
    for ta, tb in zip(ts[:-1], ts[1:]):
        dt = tb - ta
        k1 = f(ta, y)
        k2 = f(ta + dt / 2, y + dt / 2 * k1)
        k3 = f(ta + dt / 2, y + dt / 2 * k2)
        k4 = f(tb, y + dt * k3)
        y = y + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6
    return y


def rk4_three_eighths(f, y, t0, t1, h):
    """Kutta's 3/8 rule: c = (0, 1/3, 2/3, 1), a21 = 1/3, a31 = -1/3, a32 = 1, a41 = 1, a42 = -1,
    a43 = 1, b = (1/8, 3/8, 3/8, 1/8). Used only to confirm what torchdiffeq's 'rk4' is."""
    ts = step_times(t0, t1, h)
    for ta, tb in zip(ts[:-1], ts[1:]):
        dt = tb - ta
        k1 = f(ta, y)
        k2 = f(ta + dt / 3, y + dt * k1 / 3)
        k3 = f(ta + dt * 2 / 3, y + dt * (k2 - k1 / 3))
        k4 = f(tb, y + dt * (k1 - k2 + k3))
        y = y + dt * (k1 + 3 * (k2 + k3) + k4) / 8
    return y


# ---- data -----------------------------------------------------------------------------------------

def read_idx(path, magic, dims):
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    got = int.from_bytes(raw[0:4], "big")
    assert got == magic, f"{path}: magic {got:#010x}, expected {magic:#010x}"
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    assert data.size == int(np.prod(shape)), f"{path}: {data.size} bytes for shape {shape}"
    return data.reshape(shape)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)

    model = make_model(WIDTH)
    # Perturb every GroupNorm's affine parameters away from (1, 0), so a swapped weight/bias
    # mapping or a missing affine is caught; conv and linear layers keep torch's default init.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                assert m.eps == 1e-5 and m.num_groups == WIDTH
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()

    images_u8 = read_idx(IMAGES, 0x00000803, 3)[:COUNT]
    labels_u8 = read_idx(LABELS, 0x00000801, 1)[:COUNT]
    # transforms.ToTensor(): raw pixels / 255 in [0, 1], no normalisation.
    images = torch.from_numpy(images_u8.astype(np.float32)).div(255.0).reshape(COUNT, 1, 28, 28).contiguous()
    labels = torch.from_numpy(labels_u8.astype(np.float32))  # F32: what our reader takes

    block = model[7]
    assert isinstance(block, ODEBlock)
    with torch.no_grad():
        ode_input = model[:7](images)
        block.solver = "torchdiffeq"
        block.odefunc.nfe = 0
        logits = model(images)
        nfe = block.odefunc.nfe
        ode_output = block(ode_input)
        block.solver = "classic"
        logits_classic = model(images)
        # Confirm the variant: a hand-written 3/8-rule loop must match torchdiffeq's 'rk4'.
        t = block.integration_time
        manual38 = model[8:](rk4_three_eighths(block.odefunc, ode_input, t[0], t[1], STEP_SIZE))
        block.solver = "torchdiffeq"

    assert logits.dtype == torch.float32 and logits.shape == (COUNT, 10)
    assert nfe == 16, f"expected 4 steps x 4 evaluations, got {nfe}"
    diff38 = (logits - manual38).abs().max().item()
    diff_classic = (logits - logits_classic).abs().max().item()
    assert diff38 < 1e-6, f"torchdiffeq 'rk4' differs from the 3/8 rule by {diff38}"

    os.makedirs(OUT_DIR, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    weights_path = os.path.join(OUT_DIR, "weights.safetensors")
    expected_path = os.path.join(OUT_DIR, "expected.safetensors")
    # One metadata entry only: safetensors writes the metadata map in hash order, so several keys
    # would make the files differ byte-wise from run to run.
    meta = {"generator": (f"scripts/make-torchdiffeq-fixture.py; torch {torch.__version__}; "
                          f"torchdiffeq {torchdiffeq.__version__}; width {WIDTH}; "
                          f"odeint method=rk4 (Kutta 3/8 rule) step_size={STEP_SIZE} over [0, 1]")}
    save_file(state, weights_path, metadata=meta)
    save_file({
        "images": images,
        "labels": labels,
        "logits": logits.contiguous(),
        "logits_classic_rk4": logits_classic.contiguous(),
        "ode_input": ode_input.contiguous(),
        "ode_output": ode_output.contiguous(),
    }, expected_path, metadata=meta)

    # Reload into a fresh model (strict) and recompute: must be identical.
    fresh = make_model(WIDTH)
    fresh.load_state_dict(load_file(weights_path), strict=True)
    fresh.eval()
    expected = load_file(expected_path)
    with torch.no_grad():
        again = fresh(expected["images"])
    assert torch.equal(again, expected["logits"]), "reloaded model gives different logits"
    assert torch.equal(expected["labels"], labels)

    print(f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, numpy {np.__version__}")
    print("state_dict:")
    for k, v in state.items():
        print(f"  {k:32s} {list(v.shape)}")
    print(f"ODE state {list(ode_input.shape)}, NFE {nfe}")
    print(f"labels {labels.tolist()}")
    print(f"predicted {logits.argmax(1).tolist()}")
    print(f"max |torchdiffeq rk4 - hand-written 3/8 rule| = {diff38:.3e}")
    print(f"max |torchdiffeq rk4 - classic rk4|          = {diff_classic:.3e}")
    print(f"max |logits| = {logits.abs().max().item():.4f}")
    print("reload with strict=True: identical logits")
    for p in (weights_path, expected_path):
        print(f"wrote {os.path.relpath(p, ROOT)} ({os.path.getsize(p)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
