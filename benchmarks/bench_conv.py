"""Why the packed §6 classifier trains slower than a dense network of equal FLOPs, and which forms of its
convolutions could do better.

The packed engine runs the M = 16 branches' 3×3 convolutions as one grouped convolution (groups = M). At width
5.4 a branch's stages have 5, 11, 22 and 43 channels, so every group is thin. Each row times forward + backward
of one 3×3 convolution of a stage (batch 64, channels_last, the engine's layout), in fp32 and in bf16 autocast,
as the fastest of ``reps`` repetitions, against

* **dense**: one convolution with the same multiply-adds (√(M·C²) channels) — the ratio grouped / dense is what
  the stage loses to grouping;
* **padded**: each group's channels padded to a multiple of 8 (the zeros cost FLOPs, the kernel may vectorise
  better);
* **block-dense**: one dense M·C → M·C convolution whose weight is block-diagonal (M× the FLOPs, the dense
  kernel) — only for the two thinnest stages.

A form would replace the grouped one in the packed engine only where its row is below 1.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

M = 16
STAGES = ((5, 32), (11, 16), (22, 8), (43, 4))  # per-branch channels, side (width 5.4, 32² input)


def _ms(x: torch.Tensor, w: torch.Tensor, groups: int, reps: int, bf16: bool) -> float:
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = w.requires_grad_(True)

    def once() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = F.conv2d(x, w, padding=1, groups=groups)
        y.float().sum().backward()

    once()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def rows(quick: bool) -> list[dict]:
    batch, reps = (8, 1) if quick else (64, 5)
    out = []
    for bf16 in (False, True):
        prec = "bf16" if bf16 else "fp32"
        for c, side in STAGES:
            t = lambda ch, groups: _ms(torch.randn(batch, ch, side, side),  # noqa: E731
                                       torch.randn(ch, ch // groups, 3, 3), groups, reps, bf16)
            grouped = t(M * c, M)
            cd = round((M * c * c) ** 0.5)
            dense = t(cd, 1)
            pad = -(-c // 8) * 8
            padded = t(M * pad, M)
            block = t(M * c, 1) if c <= 11 else float("nan")
            note = (f"{prec}, batch {batch}, fwd+bwd: {M}×{c} ch grouped {grouped:.1f} ms, dense {cd} ch "
                    f"{dense:.1f} ms, padded to {pad} {padded:.1f} ms"
                    + (f", block-dense {block:.1f} ms" if c <= 11 else ""))
            out.append({"name": f"3x3 conv {side}², {c} ch/branch, {prec}: grouped / dense time",
                        "value": round(grouped / dense, 2), "unit": "×", "note": note})
            best_alt = min(padded, block) if c <= 11 else padded
            out.append({"name": f"3x3 conv {side}², {c} ch/branch, {prec}: best other form / grouped time",
                        "value": round(best_alt / grouped, 2), "unit": "×", "note": "< 1 would pay"})
    return out
