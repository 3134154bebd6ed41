"""PyTorch's time for what `runner train --model lmresnet20` and `runner bench solvers --workload
lmresnet` measure.

A comparison script, not part of the product. The same networks as DiffEqNet's `CIFARResNet`:
pre-activation BasicBlocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3, convolutions without bias), a 3x3 stem
to 16 channels, stages of 16/32/64 channels with strides 1/2/2, a 1x1 projection of the
pre-activation where the shape changes, BN-ReLU, global average pooling, a linear head. The LM
version combines u_{n+1} = (1 - k) u_n + k u_{n-1} + f(u_n) in every block after the first of a
stage (k = tanh(kappa), k drawn from U[-0.1, 0]; after a plain block u_{n-1} is its output), with
stochastic depth (death rate i/(L-1)(1 - p_L), kept branches scaled by 1/(1 - d_i)).

Modes:
  epoch: the training epochs on the bundled MNIST subset (4,000 images, batch 128, shuffled, no
         augmentation, inputs normalised by MNIST's mean and std, SGD with Nesterov momentum 0.9,
         lr 0.1, weight decay 5e-4), each epoch's training time (evaluation excluded) as
         DiffEqNet's metrics.jsonl `seconds`; the second epoch is the one to compare.
  step:  one training step at batch 128 on 1x28x28 and 3x32x32 random images (median of 7 after
         a warm-up), as `runner bench solvers --workload lmresnet`.

Usage (2 threads, interleaved with DiffEqNet's runs in the same minutes):
    python3 scripts/compare/lmresnet_torch.py epoch --model lmresnet20 --survival 1
    .build/release/runner train --model lmresnet20 --epochs 2 --batch-size 128 \
        --crop-padding 0 --survival 1 --device cpu --out /tmp/lm
    python3 scripts/compare/lmresnet_torch.py step
"""
import argparse
import gzip
import json
import math
import os
import random
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(2)


class Block(nn.Module):
    def __init__(self, cin, cout, stride, lm):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.projection = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None)
        self.kappa = nn.Parameter(torch.tensor([math.atanh(-0.1 * random.random())])) if lm else None

    def branch(self, a):
        return self.conv2(F.relu(self.norm2(self.conv1(a))))


class CIFARResNet(nn.Module):
    def __init__(self, depth, lm, channels, survival=1.0):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(channels, 16, 3, 1, 1, bias=False)
        blocks, c = [], 16
        for stage, width in enumerate([16, 32, 64]):
            for i in range(n):
                blocks.append(Block(c, width, 2 if i == 0 and stage > 0 else 1, lm and i > 0))
                c = width
        self.blocks = nn.ModuleList(blocks)
        self.head_norm = nn.BatchNorm2d(64)
        self.classifier = nn.Linear(64, 10)
        self.survival = survival

    def forward(self, x):
        u = self.stem(x)
        previous = u
        count = len(self.blocks)
        for i, block in enumerate(self.blocks):
            d = i / (count - 1) * (1 - self.survival)
            scale = 1.0
            if self.training and d > 0:
                scale = 0.0 if random.random() < d else 1 / (1 - d)
            if block.kappa is not None:
                k = torch.tanh(block.kappa)
                nxt = (1 - k) * u + k * previous
                if scale != 0:
                    nxt = nxt + scale * block.branch(F.relu(block.norm1(u)))
                previous, u = u, nxt
            else:
                if block.projection is None and scale == 0:
                    pass
                else:
                    a = F.relu(block.norm1(u))
                    shortcut = block.projection(a) if block.projection is not None else u
                    u = shortcut if scale == 0 else shortcut + scale * block.branch(a)
                previous = u
        return self.classifier(F.relu(self.head_norm(u)).mean(dim=(2, 3)))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def epochs(args):
    root = os.path.join(os.path.dirname(__file__), "..", "..", "data", "mnist-5k")
    images = read_idx(os.path.join(root, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255
    labels = read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    x = torch.from_numpy((images - 0.1307) / 0.3081).unsqueeze(1)
    y = torch.from_numpy(labels)
    torch.manual_seed(0)
    random.seed(0)
    depth = int(args.model.lstrip("lmresnet"))
    model = CIFARResNet(depth, args.model.startswith("lm"), 1, args.survival)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x))
        start = time.perf_counter()
        for b in range(0, len(x), 128):
            idx = order[b:b + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
        seconds = time.perf_counter() - start
        print(json.dumps({
            "library": "pytorch " + torch.__version__, "mode": "epoch", "model": args.model,
            "survival": args.survival, "epoch": epoch + 1, "seconds": seconds,
            "images": len(x), "mkldnn": torch.backends.mkldnn.enabled}), flush=True)


def steps(args):
    for channels, side in [(1, 28), (3, 32)]:
        torch.manual_seed(5)
        x = torch.randn(128, channels, side, side)
        y = torch.randint(0, 10, (128,))
        for config, lm, survival in [
            ("resnet20", False, 1.0), ("lmresnet20", True, 1.0), ("lmresnet20_sd", True, 0.5)]:
            model = CIFARResNet(20, lm, channels, survival)
            opt = torch.optim.SGD(
                model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
            times = []
            for rep in range(8):
                start = time.perf_counter()
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss.item()
                if rep > 0:
                    times.append(time.perf_counter() - start)
            print(json.dumps({
                "library": "pytorch " + torch.__version__, "workload": "lmresnet",
                "config": config, "batch": 128, "shape": f"{channels}x{side}x{side}",
                "median_s": statistics.median(times),
                "parameters": sum(p.numel() for p in model.parameters())}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["epoch", "step"])
    p.add_argument("--model", default="lmresnet20")
    p.add_argument("--survival", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--no-mkldnn", action="store_true")
    args = p.parse_args()
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    epochs(args) if args.mode == "epoch" else steps(args)
