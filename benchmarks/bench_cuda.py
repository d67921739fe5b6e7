"""The CUDA rows only (no CPU rows), for a short lease on a GPU machine.

Reuses the timing functions of ``bench_classifier``, ``bench_engine`` and
``bench_gan``: classifier training images/s (M = 16 slim ResNet18 branches,
loop / packed fp32 / packed bf16 and the equal-FLOPs dense network) at batch
128 and 512, the packed engine's fwd+bwd time, and GAN training images/s at
32² and at the paper's 256². Without CUDA it returns no rows.

    python benchmarks/run.py cuda
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from branchspec.models.resnet import DEFAULT_WIDTH, ClassifierConfig, SlimResNet18, build_classifier

HERE = Path(__file__).resolve().parent


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rows(quick: bool) -> list[dict]:
    if not torch.cuda.is_available():
        return []
    gpu = torch.cuda.get_device_name(0)
    clf, gan = _sibling("bench_classifier"), _sibling("bench_gan")
    width = 2.0 if quick else DEFAULT_WIDTH
    steps = 2 if quick else 20
    out = []
    for batch in (128, 512):
        ips = {}
        for engine, prec in (("loop", "fp32"), ("packed", "fp32"), ("packed", "bf16")):
            model = build_classifier(ClassifierConfig(num_branches=16, width=width, engine=engine, seed=0))
            ips[engine, prec] = _guard(out, lambda: clf._images_per_s(model, batch, steps, "cuda", bf16=prec == "bf16"))
            out.append({"name": f"train M=16 {engine} {prec} (cuda, batch {batch})", "value": round(ips[engine, prec], 1),
                        "unit": "images/s", "note": f"width {width:g}, {gpu}"})
        for prec in ("fp32", "bf16"):
            dense = SlimResNet18(4 * width)
            ips["dense", prec] = _guard(out, lambda: clf._images_per_s(dense, batch, steps, "cuda", bf16=prec == "bf16",
                                                                       channels_last=True))
            out.append({"name": f"train dense ResNet18 width {4 * width:g} {prec} (cuda, batch {batch})",
                        "value": round(ips["dense", prec], 1), "unit": "images/s", "note": f"equal FLOPs, {gpu}"})
        best = max(ips["packed", "fp32"], ips["packed", "bf16"])
        out.append({"name": f"packed (best) / dense (best), cuda, batch {batch}",
                    "value": round(best / max(ips["dense", "fp32"], ips["dense", "bf16"]), 2), "unit": "x", "note": gpu})
    for size, batch, base, top in ((32, 8, 16, 64), (256, 8, 16, 64), (256, 8, 32, 128)):
        for amp in (False, True):
            ips = _guard(out, lambda: gan._throughput(size, "packed", "cuda", batch, 2 if quick else 10, quick, amp,
                                                      dict(base_width=base, max_width=top)))
            out.append({"name": f"GAN train step, CUDA {size}², M=9 packed {'bf16' if amp else 'fp32'}, "
                                f"G widths {base}/{top}", "value": round(ips, 2), "unit": "images/s",
                        "note": f"batch {batch}, {gpu}"})
    return out



def _guard(out: list[dict], measure) -> float:
    """``measure()``, or NaN with an error row (a failing configuration must not hide the others)."""
    try:
        return float(measure())
    except Exception as exc:  # noqa: BLE001 - reported as a row
        out.append({"name": "error", "value": "", "unit": "", "note": f"{type(exc).__name__}: {exc}"[:300]})
        return float("nan")
