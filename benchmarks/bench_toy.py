"""Toy sweep (§4.1): the vectorised trainer vs a straightforward per-trial autograd loop.

Rows: wall time of the full Toy1 sweep (M = 2…30 × 1000 trials, default
steps) with the vectorised engine, and the same sweep done one trial at a
time with autograd — timed on a sample of M values and a few steps each,
fitted as a + b·M seconds per step and extrapolated — plus their ratio.
``quick`` shrinks the sweep to 20 trials (the extrapolation still targets
that small sweep).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from branchspec.toy import ToyConfig, initial_parameters, reference_train, toy_data, train_toy


def _plain_loop_step_time(m: int, steps: int, problem: str = "toy1", lr: float = 0.03) -> float:
    """Seconds per GD step of one network as one (M,)-tensor pair with autograd (the lean baseline)."""
    x, y = toy_data(problem)
    w = torch.empty(m).uniform_(-1, 1).requires_grad_()
    b = torch.empty(m).uniform_(-1, 1).requires_grad_()
    opt = torch.optim.SGD([w, b], lr=lr)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        f = torch.nn.functional.leaky_relu(w[:, None] * x + b[:, None], 0.01).sum(0)  # (N,)
        loss = 0.5 * ((f - y) ** 2).sum()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def _module_loop_step_time(m: int, steps: int) -> float:
    """Seconds per GD step of one network built from ToyNeuron modules (Branched, loop engine, SGD)."""
    w0 = torch.empty(m, dtype=torch.float32).uniform_(-1, 1)
    t0 = time.perf_counter()
    reference_train(w0, w0.clone(), "toy1", steps, 0.03)
    return (time.perf_counter() - t0) / steps


def _extrapolate(step_time, cfg: ToyConfig, sample_ms=(2, 16, 30), steps: int = 40) -> tuple[float, str]:
    ms = np.array(sample_ms, dtype=float)
    t = np.array([step_time(int(m), steps) for m in sample_ms])
    b, a = np.polyfit(ms, t, 1)  # seconds per step ≈ a + b·M
    total = sum(cfg.trials * cfg.resolved_steps * (a + b * m) for m in cfg.branches)
    return float(total), f"fit {1e3 * a:.3f} + {1e3 * b:.4f}·M ms/step from M={list(sample_ms)}, {steps} steps each"


def rows(quick: bool) -> list[dict]:
    cfg = ToyConfig(problem="toy1", trials=20 if quick else 1000)
    what = f"toy1 M=2..30 x {cfg.trials} trials x {cfg.resolved_steps} steps"
    out = []
    initial_parameters(cfg)  # warm-up of the allocator / RNG
    t0 = time.perf_counter()
    run = train_toy(cfg)  # default: 1 torch thread
    vec = time.perf_counter() - t0
    ok = min(d["success_rate"] for d in run.per_m() if d["m"] >= 10)
    out.append({"name": f"vectorised sweep, {what}", "value": round(vec, 2), "unit": "s",
                "note": f"train_toy default (1 torch thread); min success M>=10: {100 * ok:.1f} %"})
    if not quick and torch.get_num_threads() > 1:
        t0 = time.perf_counter()
        train_toy(cfg, threads=None)
        out.append({"name": f"vectorised sweep, {what}, {torch.get_num_threads()} threads",
                    "value": round(time.perf_counter() - t0, 2), "unit": "s", "note": "train_toy(threads=None)"})
    steps = 10 if quick else 40
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # the baselines get the same single thread
    plain, note = _extrapolate(_plain_loop_step_time, cfg, steps=steps)
    out.append({"name": f"per-trial autograd loop ((M,) tensors), {what}, extrapolated", "value": round(plain, 1),
                "unit": "s", "note": note})
    mod, note = _extrapolate(_module_loop_step_time, cfg, steps=steps)
    out.append({"name": f"per-trial autograd loop (Branched of ToyNeuron modules), {what}, extrapolated",
                "value": round(mod, 1), "unit": "s", "note": note})
    torch.set_num_threads(prev)
    out.append({"name": "speed-up of the vectorised sweep over the (M,)-tensor loop", "value": round(plain / vec, 1),
                "unit": "x", "note": ""})
    out.append({"name": "speed-up of the vectorised sweep over the module loop", "value": round(mod / vec, 1),
                "unit": "x", "note": ""})
    return out
