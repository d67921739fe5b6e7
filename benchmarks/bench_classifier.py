"""Training throughput of the §6 classifier: M = 16 slim ResNet18 branches.

Rows: training images/s (forward + clamped-CE loss + backward + SGD step) for
the loop and packed engines of ``Branched`` in fp32,
the packed engine under bfloat16 autocast, and one dense slim ResNet18 of
about the same FLOPs in fp32 and bf16 (channels_last) (width chosen so its
multiply-adds per image match the 16 branches: FLOPs grow as width², so
width ≈ 4·5.4 — one network of 4× the width has 16× the FLOPs of one branch).
On CPU, and on CUDA when available.

    python benchmarks/run.py classifier [--quick]
"""

from __future__ import annotations

import time

import torch

from branchspec.models.resnet import DEFAULT_WIDTH, ClassifierConfig, SlimResNet18, build_classifier
from branchspec.losses import classifier_loss


def _macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of the conv and linear layers for one forward pass of ``x``."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            total += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.Linear):
            total += out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total


def _images_per_s(model, batch: int, steps: int, device: str, bf16: bool = False, channels_last: bool = False) -> float:
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            f = model(x)
        loss, _ = classifier_loss(f, y, clamp=True)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def rows(quick: bool) -> list[dict]:
    m = 16
    width = 2.0 if quick else DEFAULT_WIDTH
    batch, steps = (8, 1) if quick else (128, 5)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    x1 = torch.randn(1, 3, 32, 32)
    branch_macs = _macs(SlimResNet18(width), x1)
    dense_width = 4 * width  # 4× width -> ≈ 16× MACs
    dense_macs = _macs(SlimResNet18(dense_width), x1)
    out = []
    for dev in devices:
        ips = {}
        for engine, prec in (("loop", "fp32"), ("packed", "fp32"), ("packed", "bf16")):
            model = build_classifier(ClassifierConfig(num_branches=m, width=width, engine=engine, seed=0))
            # NCHW for the loop: a channels_last slim ResNet18 aborts with "double free or corruption" on torch
            # 2.13 CPU (reproduced at widths 2 and 5.4); the packed engine converts its activations itself.
            ips[engine, prec] = _images_per_s(model, batch, steps, dev, bf16=prec == "bf16")
            out.append({"name": f"train M={m} {engine} engine {prec} ({dev})", "value": round(ips[engine, prec], 1),
                        "unit": "images/s", "note": f"width {width:g}, batch {batch}, {m * branch_macs / 1e6:.1f} MMAC/image"
                        + (", channels_last activations" if engine == "packed" else "")})
        for prec in ("fp32", "bf16"):
            dense = SlimResNet18(dense_width)
            ips["dense", prec] = _images_per_s(dense, batch, steps, dev, bf16=prec == "bf16", channels_last=True)
            out.append({"name": f"train dense ResNet18 width {dense_width:g} {prec} ({dev})",
                        "value": round(ips["dense", prec], 1), "unit": "images/s",
                        "note": f"equal-FLOPs reference, channels_last: {dense_macs / 1e6:.1f} MMAC/image, "
                                f"{sum(p.numel() for p in dense.parameters()) / 1e6:.2f} M params"})
        best = ips["packed", "bf16"]
        out.append({"name": f"packed bf16 / loop fp32 ({dev})", "value": round(best / ips["loop", "fp32"], 2), "unit": "x",
                    "note": "target >= 2"})
        out.append({"name": f"packed bf16 / dense fp32 ({dev})", "value": round(best / ips["dense", "fp32"], 2),
                    "unit": "x", "note": "parity = 1"})
    return out


if __name__ == "__main__":
    import sys

    for r in rows("--quick" in sys.argv):
        print(r)
