"""Decomposition and App. F throughput: generator decomposition images/s (loop vs packed), segmentation s/image.

Decomposition: one ``forward_all`` pass of an (untrained) M = 9 branched
generator, batch 8, at 32×32 on CPU (64×64 and, with CUDA, 256×256 too) —
the cost of ``branchspec decompose`` without file writing. Segmentation: the
App. F procedure (Chan–Vese 300 iterations) on a constructed 64×64 / 128×128
decomposition with M = 9.

    python benchmarks/run.py decompose [--quick]
"""

from __future__ import annotations

import time

import numpy as np
import torch


def _decompose_ips(img_size: int, engine: str, device: str, batch: int, reps: int, quick: bool) -> float:
    from branchspec.apps.decompose import decompose_batch
    from branchspec.models.generator import GeneratorConfig, build_generator

    widths = dict(base_width=4, max_width=8, style_dim=8) if quick else dict(base_width=32, max_width=128)
    gen = build_generator(GeneratorConfig(img_size=img_size, num_domains=2, num_branches=9, engine=engine,
                                          **widths)).to(device).eval()
    x = torch.rand(batch, 3, img_size, img_size, device=device) * 2 - 1
    y = torch.randint(0, 2, (batch,), device=device)
    decompose_batch(gen, x, y)  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        decompose_batch(gen, x, y)  # ends with .cpu(): synchronised
    return batch * reps / (time.perf_counter() - t0)


def _segment_seconds(size: int, reps: int) -> float:
    from branchspec.apps.components import Decomposition
    from branchspec.apps.segmentation import segment

    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(0)
    comps = rng.normal(0, 0.05, (9, 3, size, size))
    s = size / 64
    for cy, cx in ((24, 18), (24, 46), (47, 32)):
        comps[2] += np.exp(-((yy - cy * s) ** 2 + (xx - cx * s) ** 2) / (2 * (4 * s) ** 2))
    R = np.zeros((3, size, size))
    d = Decomposition(R=R, components=comps.astype(np.float32), output=(R + comps.sum(0)).astype(np.float32))
    segment(d)  # warm-up: imports and first-call set-up are not per-image cost
    t0 = time.perf_counter()
    for _ in range(reps):
        segment(d)
    return (time.perf_counter() - t0) / reps


def rows(quick: bool) -> list[dict]:
    out = []
    sizes = [16] if quick else [32, 64]
    for size in sizes:
        for engine in ("loop", "packed"):
            ips = _decompose_ips(size, engine, "cpu", 2 if quick else 8, 1 if quick else 5, quick)
            out.append({"name": f"decompose, CPU {size}², M=9, {engine}", "value": round(ips, 1), "unit": "images/s",
                        "note": "one forward_all pass, untrained slim branches" + (" (quick: tiny widths)" if quick else "")})
    if torch.cuda.is_available():
        size = 64 if quick else 256
        for engine in ("loop", "packed"):
            ips = _decompose_ips(size, engine, "cuda", 8, 2 if quick else 20, quick)
            out.append({"name": f"decompose, CUDA {size}², M=9, {engine}", "value": round(ips, 1), "unit": "images/s",
                        "note": "one forward_all pass, untrained slim branches"})
    for size in [32] if quick else [64, 128]:
        sec = _segment_seconds(size, 1 if quick else 3)
        out.append({"name": f"segment (App. F), {size}², M=9", "value": round(sec, 3), "unit": "s/image",
                    "note": "automatic choice + Chan-Vese 300 it. + pair filter"})
    return out
