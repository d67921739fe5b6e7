"""Branched-GAN training throughput: images/s of a full step (D step + G step + EMA), loop vs packed engine.

CPU at 32×32 (M = 9 slim branches, base width 32, widest 128, batch 8); on
CUDA also 256×256 (the paper's size, bfloat16 autocast). Data: the embedded
scikit-image photographs (random crops), so the benchmark needs nothing else.

    python benchmarks/bench_gan.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch


def _throughput(img_size: int, engine: str, device: str, batch: int, steps: int, quick: bool, amp: bool = False,
                widths: dict | None = None) -> float:
    from branchspec.data.embedded import embedded_domains
    from branchspec.gan.train import GanTrainConfig, GanTrainer

    if quick or widths is None:
        widths = dict(base_width=4, max_width=8, style_dim=8, d_base_width=4, d_max_width=8) if quick else {}
    cfg = GanTrainConfig(img_size=img_size, num_branches=9, batch_size=batch, engine=engine, device=device, amp=amp,
                         n_per_domain=max(batch, 8), **widths)
    data = embedded_domains(img_size, n_per_domain=max(batch, 8))
    with tempfile.TemporaryDirectory() as out:
        trainer = GanTrainer(cfg, out, progress=False, data=data)
        trainer.train_step()  # warm-up (and cuDNN / allocator set-up)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        if device == "cuda":
            torch.cuda.synchronize()
        return batch * steps / (time.perf_counter() - t0)


def rows(quick: bool) -> list[dict]:
    out = []
    size, batch, steps = (16, 2, 1) if quick else (32, 8, 3)
    ips = {}
    for engine, amp in (("loop", False), ("packed", False), ("packed", True)):
        ips[engine, amp] = _throughput(size, engine, "cpu", batch, steps, quick, amp=amp)
        out.append({"name": f"GAN train step, CPU {size}², M=9, {engine} {'bf16' if amp else 'fp32'}",
                    "value": round(ips[engine, amp], 2), "unit": "images/s",
                    "note": f"batch {batch}, slim branches" + (" (quick: tiny widths)" if quick else "")})
    best = max(ips[("packed", False)], ips[("packed", True)])
    out.append({"name": f"GAN packed (best precision) / loop fp32, CPU {size}²", "value": round(best / ips["loop", False], 2),
                "unit": "x", "note": "target >= 2"})
    if torch.cuda.is_available():
        size, batch, steps = (64, 4, 2) if quick else (256, 8, 10)
        for engine in ("loop", "packed"):
            ips = _throughput(size, engine, "cuda", batch, steps, quick, amp=True)
            out.append({"name": f"GAN train step, CUDA {size}², M=9, {engine}", "value": round(ips, 2),
                        "unit": "images/s", "note": f"batch {batch}, bf16 autocast, {torch.cuda.get_device_name(0)}"})
    return out


if __name__ == "__main__":
    for r in rows("--quick" in sys.argv):
        print(f"{r['name']}: {r['value']} {r['unit']} ({r['note']})")
