"""Why the packed §6 classifier trains at half the speed of a dense network of equal FLOPs (issue 10).

The packed engine runs the M = 16 branches' 3×3 convolutions as one grouped
convolution (groups = M). At width 5.4 a branch's stages have 5, 11, 22 and 43
channels, so every group is tiny. Each row times forward + backward of one
3×3 convolution of a stage (batch 64, channels_last, the engine's layout)
against a dense convolution with the same multiply-adds (√(M·C²) channels);
the ratio is what the stage loses to grouping on this machine.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

M = 16
STAGES = ((5, 32), (11, 16), (22, 8), (43, 4))  # per-branch channels, side (width 5.4, 32² input)


def _ms(x: torch.Tensor, w: torch.Tensor, groups: int, reps: int) -> float:
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = w.requires_grad_(True)

    def once():
        F.conv2d(x, w, padding=1, groups=groups).sum().backward()

    once()  # warm-up (oneDNN primitive creation)
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - t0) / reps * 1e3


def rows(quick: bool) -> list[dict]:
    batch, reps = (8, 1) if quick else (64, 5)
    out = []
    for c, side in STAGES:
        grouped = _ms(torch.randn(batch, M * c, side, side), torch.randn(M * c, c, 3, 3), M, reps)
        cd = round((M * c * c) ** 0.5)
        dense = _ms(torch.randn(batch, cd, side, side), torch.randn(cd, cd, 3, 3), 1, reps)
        note = f"batch {batch}, fwd+bwd, {M}×{c} ch grouped {grouped:.1f} ms vs dense {cd} ch {dense:.1f} ms"
        out.append({"name": f"3x3 conv {side}², {c} ch/branch: grouped / dense time", "value": round(grouped / dense, 2),
                    "unit": "×", "note": note})
    return out
