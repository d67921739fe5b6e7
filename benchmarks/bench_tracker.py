"""Overhead of parts.Tracker on a small CPU training run (a 1-layer transformer on digits rows).

Trains the same model for ``steps`` steps with and without a tracker (same
seed; the weights come out identical) and prints the times and the overhead
at the tracker's default interval (every=20) and at every=1. Times are the
process's CPU time (``time.process_time``, one torch thread), which a CPU
shared with other jobs disturbs far less than wall time; runs are
interleaved and the fastest of ``repeats`` kept. The cost of one
measurement is (T(every=1) − T(no tracker)) / steps.
Usage: ``python benchmarks/bench_tracker.py [steps] [repeats]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

from branchspec import parts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from attention_heads import RowTransformer  # noqa: E402  (the model of examples/attention_heads.py)


def run(steps: int, every: int | None) -> float:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16  # (N, 8, 8)
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = RowTransformer()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = parts.Tracker(parts.heads(model.attn), tmp, every=every) if every else None
        t0 = time.process_time()
        for _ in range(steps):
            idx = torch.randint(0, len(x), (64,), generator=gen)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            if tracker is not None:
                tracker.step(model, (x[idx], y[idx]))
            opt.step()
        return time.process_time() - t0


def measure(steps: int, repeats: int) -> dict:
    """Fastest of ``repeats`` interleaved runs: ``{every: CPU seconds}``, every=None = no tracker."""
    torch.set_num_threads(1)
    best: dict = {}
    for _ in range(repeats):
        for every in (None, 20, 1):
            t = run(steps, every)
            best[every] = min(t, best.get(every, t))
    return best


def rows(quick: bool) -> list[dict]:
    """Rows for ``benchmarks/run.py``: overhead at every=20, cost of one measurement and of one step."""
    steps = 40 if quick else 200
    best = measure(steps, 1 if quick else 3)
    base, t20, m1 = best[None], best[20], (best[1] - best[None]) / steps
    note = f"CPU time; 1-layer transformer, 4 heads, batch 64, {steps} steps, 1 thread, fastest of interleaved runs"
    return [
        {"name": "tracker overhead at every=20 (default)", "value": 100 * (t20 - base) / base, "unit": "%", "note": note},
        {"name": "one tracker measurement", "value": 1000 * m1, "unit": "ms", "note": "heads of the layer, training batch"},
        {"name": "one training step without tracker", "value": 1000 * base / steps, "unit": "ms", "note": note},
    ]


def main(steps: int = 200, repeats: int = 3) -> None:
    best = measure(steps, repeats)
    base = best[None]
    print(f"tracker overhead, {steps} steps, 1-layer transformer (4 heads), batch 64, 1 thread, CPU time:")
    print(f"  no tracker: {base:7.3f} s ({1000 * base / steps:.2f} ms per step)")
    for every in (20, 1):
        print(f"  every={every:<3d}  {best[every]:7.3f} s  overhead {100 * (best[every] - base) / base:+6.1f} %")
    print(f"  one measurement: {1000 * (best[1] - base) / steps:.2f} ms")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
