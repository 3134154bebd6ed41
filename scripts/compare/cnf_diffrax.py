"""diffrax's time for what `runner bench solvers --workload cnf` measures (the step mode of
cnf_torchdiffeq.py), JIT-compiled, the compile time excluded.

A comparison script, not part of the product (pip install jax diffrax, for the comparison
only). The same model as cnf_torchdiffeq.py: FFJORD's 3 ConcatSquash layers of 64 with tanh,
T = 0.5, dopri5 (diffrax.Dopri5) at rtol = atol = 1e-5 (PIDController, its own first step),
the backsolve adjoint (diffrax.BacksolveAdjoint, as DiffEqNet's `.backsolve` and torchdiffeq's
odeint_adjoint), Hutchinson's e^T (df/dz) e with Rademacher e drawn once per solve, or the exact
trace; one solve for the whole batch of 512 (the state [z, delta log p] of every sample, one step
size, as torchdiffeq and DiffEqNet solve it; diffrax's FFJORD example vmaps one solve per
sample instead). Adam at 1e-3 written out (no optax). The step (forward, adjoint backward,
update) is one eqx.filter_jit function, compiled by a warm-up call; the median over
--iterations fresh batches after it, each ended by block_until_ready.

Usage (2 threads, interleaved with DiffEqNet's and torchdiffeq's runs, under nice):
    python3 scripts/compare/cnf_diffrax.py --iterations 20
"""
import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import json
import math
import statistics
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


class ConcatSquash(eqx.Module):
    layer: eqx.nn.Linear
    gate: eqx.nn.Linear
    bias: eqx.nn.Linear

    def __init__(self, i, o, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.layer = eqx.nn.Linear(i, o, key=k1)
        self.gate = eqx.nn.Linear(1, o, key=k2)
        self.bias = eqx.nn.Linear(1, o, use_bias=False, key=k3)

    def __call__(self, t, x):
        tt = jnp.reshape(t, (1,))
        return self.layer(x) * jax.nn.sigmoid(self.gate(tt)) + self.bias(tt)


class Net(eqx.Module):
    layers: list

    def __init__(self, dims, key):
        keys = jax.random.split(key, len(dims) - 1)
        self.layers = [ConcatSquash(a, b, k) for a, b, k in zip(dims[:-1], dims[1:], keys)]

    def __call__(self, t, z):
        for i, layer in enumerate(self.layers):
            z = layer(t, z)
            if i < len(self.layers) - 1:
                z = jnp.tanh(z)
        return z


def drift(t, y, args):
    model, eps = args
    z, _ = y
    f = lambda zz: jax.vmap(lambda zi: model(t, zi))(zz)
    if eps is None:
        fz = f(z)
        jac = jax.vmap(jax.jacrev(lambda zi: model(t, zi)))(z)
        div = jnp.trace(jac, axis1=1, axis2=2)
    else:
        fz, vjp = jax.vjp(f, z)
        (e_j,) = vjp(eps)
        div = jnp.sum(e_j * eps, axis=1)
    return fz, -div


def log_density(model, x, eps):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(drift), diffrax.Dopri5(), t0=0.0, t1=0.5, dt0=None,
        y0=(x, jnp.zeros(x.shape[0])), args=(model, eps),
        stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-5),
        adjoint=diffrax.BacksolveAdjoint(), max_steps=100_000)
    z, delta = sol.ys[0][-1], sol.ys[1][-1]
    logpz = -0.5 * jnp.sum(z ** 2, axis=1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
    return logpz - delta, sol.stats["num_steps"]


def two_moons(n, rng):
    a = math.pi * rng.random(n)
    outer = np.arange(n) % 2 == 0
    x = np.where(outer, np.cos(a), 1 - np.cos(a))
    y = np.where(outer, np.sin(a), 1 - np.sin(a) - 0.5)
    x = 2 * (x + 0.1 * rng.standard_normal(n)) - 1
    y = 2 * (y + 0.1 * rng.standard_normal(n)) - 0.2
    return np.stack([x, y], 1).astype(np.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--trace", choices=["hutchinson", "exact"], default="hutchinson")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    hutchinson = a.trace == "hutchinson"
    key = jax.random.PRNGKey(a.seed)
    model = Net([2, 64, 64, 64, 2], key)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)

    @eqx.filter_jit
    def step(params, m, v, count, x, key):
        eps = (jax.random.rademacher(key, x.shape, dtype=x.dtype) if hutchinson else None)

        def loss(params):
            logp, steps = log_density(eqx.combine(params, static), x, eps)
            return -jnp.mean(logp) / x.shape[1], steps

        (value, steps), grads = jax.value_and_grad(loss, has_aux=True)(params)
        count = count + 1
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        lr = 1e-3 * jnp.sqrt(1 - 0.999 ** count) / (1 - 0.9 ** count)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - lr * m / (jnp.sqrt(v) + 1e-8 * jnp.sqrt(1 - 0.999 ** count)),
            params, m, v)
        return params, m, v, count, value, steps

    rng = np.random.default_rng(a.seed)
    count = jnp.array(0.0)
    compile_start = time.perf_counter()
    times, steps_total = [], 0
    for i in range(a.iterations + 1):
        x = jnp.asarray(two_moons(512, rng))
        key, sub = jax.random.split(key)
        start = time.perf_counter()
        params, m, v, count, value, steps = step(params, m, v, count, x, sub)
        value.block_until_ready()
        elapsed = time.perf_counter() - start
        if i == 0:
            compile_seconds = time.perf_counter() - compile_start
        else:
            times.append(elapsed)
            steps_total += int(steps)
    print(json.dumps({
        "library": "diffrax", "workload": "cnf", "config": f"two_moons_{a.trace}", "batch": 512,
        "median_s": statistics.median(times), "iterations": a.iterations,
        "forward_steps": steps_total / a.iterations, "final_nll": float(value),
        "first_call_with_compile_s": compile_seconds, "jax": jax.__version__,
        "diffrax": diffrax.__version__}))


if __name__ == "__main__":
    main()
