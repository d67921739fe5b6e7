"""The §7 GAN step at 64² on real photographs: seconds per step, as ``train-gan`` runs it.

The configuration of ``branchspec train-gan --data catdog-128 --img-size 64 --branches 9 --batch-size 8
--base-width 16 --max-width 64 --engine packed`` (64 images of the collection in memory; the step does
not depend on the collection's size). Rows: the paper's step in fp32 and bf16 (R1 on every step), the
fast step (``--precision auto`` + ``--r1-every 16``; reflect padding, the default), and
``--padding zeros --compile``. The median of ``STEPS`` steps after two warm-up steps (compile time excluded).

Before / after a change, on one machine, one process after the other (the same script runs on an
older checkout, whose trainer lacks the new options; those rows are then skipped):

    python benchmarks/bench_gan64.py                       # this checkout
    PYTHONPATH=OLD/src python benchmarks/bench_gan64.py    # an older checkout
    python benchmarks/run.py gan64                         # as a row of the benchmark table
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "catdog-128"
CONFIG = dict(img_size=64, num_branches=9, batch_size=8, base_width=16, max_width=64, engine="packed",
              sample_every=0, ckpt_every=0)
STEPS = 6


@functools.lru_cache(maxsize=1)
def _images():
    """64 images of the collection (32 per domain), read once for every variant."""
    from branchspec.data.domains import load_domains

    data = load_domains(str(DATA), 64, progress=False)
    return data.subset(torch.cat([torch.nonzero(data.labels == d).flatten()[:32] for d in range(2)]))


def seconds_per_step(steps: int = STEPS, **options) -> float | None:
    """Median seconds of one training step with ``options`` on top of :data:`CONFIG`; None if unsupported."""
    from branchspec.gan.train import GanTrainConfig, GanTrainer

    fields = {f.name for f in dataclasses.fields(GanTrainConfig)}
    if any(k not in fields for k in options):
        return None
    data = _images()
    cfg = GanTrainConfig(data=str(DATA), **CONFIG, **options)
    with tempfile.TemporaryDirectory() as out:
        tr = GanTrainer(cfg, out, progress=False, data=data)
        tr.train_step(), tr.train_step()  # warm-up (and compile)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            tr.train_step()
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


VARIANTS = {  # row name -> trainer options
    "paper step, fp32": dict(precision="fp32"),
    "paper step, bf16": dict(precision="bf16"),
    "fast step (--precision auto --r1-every 16)": dict(precision="auto", r1_every=16),
    "fast step + --padding zeros --compile": dict(precision="auto", r1_every=16, padding="zeros", compile=True),
}


def rows(quick: bool) -> list[dict]:
    if not DATA.is_dir():
        return []
    from branchspec.precision import describe

    out = []
    for name, opts in VARIANTS.items():
        s = seconds_per_step(2 if quick else STEPS, **opts)
        if s is not None:
            out.append({"name": f"GAN step 64², M=9, catdog-128: {name}", "value": round(s, 3), "unit": "s/step",
                        "note": f"batch 8, widths 16-64, packed, {torch.get_num_threads()} threads, CPU {describe()}"})
    return out


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    only = sys.argv[1:] or list(VARIANTS)
    for name in only:
        s = seconds_per_step(**VARIANTS[name])
        print(f"{name}: {'n/a (older trainer)' if s is None else f'{s:.3f} s/step'}", flush=True)
