"""Can the CPU run's branched generator re-generate its input at all? (§7 eq. 15)

Trains the generator of docs/gan.md's CPU runs (32², M = 9, base width 16, max
width 64, Gaussian R, packed engine) on the L1 re-generation loss *alone* —
no discriminator, every target the image's own domain — with the GAN's Adam
settings (lr 1e-4, β = (0, 0.99)) and batch 8, and prints the own-domain PSNR
of G(x, y) and of R(x) against x on 256 images left out of its training, every
100 steps (the library's PSNR, as ``decompose --judge`` reports it). If G reaches R + 2 dB here, what holds the GAN's own-domain PSNR
below that is its other losses, not the architecture's capacity.

Usage:
    python scripts/gan_regen_capacity.py DATA STEPS
    e.g. python scripts/gan_regen_capacity.py ../shared/data/cifar-10-batches-py 600
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from branchspec.apps.components import to_unit
from branchspec.apps.decomp_stats import psnr
from branchspec.data.domains import load_domains
from branchspec.models.generator import GeneratorConfig, build_generator


def mean_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of the library's PSNR (dB) of two (N, C, H, W) batches in [-1, 1], clipped to it:
    the own-domain PSNR that ``branchspec decompose --judge`` reports."""
    return float(np.mean([psnr(to_unit(x.numpy()), to_unit(y.numpy())) for x, y in zip(a, b)]))


def main(data: str, steps: int) -> None:
    torch.set_num_threads(1)
    d = load_domains(f"{data}:cat,dog,deer,horse", 32, progress=False)
    x_all = d.images.float() / 127.5 - 1  # (N, 3, 32, 32) in [-1, 1]
    perm = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(0))
    train, held = perm[:-256], perm[-256:]
    cfg = GeneratorConfig(img_size=32, num_domains=4, num_branches=9, base_width=16, max_width=64, engine="packed")
    g = build_generator(cfg)
    opt = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.0, 0.99))
    gen, t0 = torch.Generator().manual_seed(1), time.time()
    for step in range(1, steps + 1):
        i = train[torch.randint(len(train), (8,), generator=gen)]
        loss = (g(x_all[i], d.labels[i]) - x_all[i]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps:
            with torch.no_grad():
                x, y = x_all[held], d.labels[held]
                row = {"step": step, "psnr_G": round(mean_psnr(g(x, y), x), 2),
                       "psnr_R": round(mean_psnr(g.residual(x), x), 2),
                       "l1": round(loss.item(), 4), "seconds": round(time.time() - t0)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
