"""Exact first-layer Hessian of a 16-branch slim-ResNet classifier on 128 CIFAR-size images.

Measures the wall time of a first call (what one ``branchspec hessian`` run
pays, set-up included) and of a second call with the same shapes, and the
peak memory of
:func:`branchspec.hessian.factors.blockwise_hessian` (the eq. 13–14 method
``branchspec hessian`` uses for subsets this large) with the clamped
cross-entropy of §6 on random 3×32×32 images. Each measurement runs in a
fresh process: CPU peak memory = growth of the max resident set size
(``resource.getrusage``) during the computation; on a GPU,
``torch.cuda.max_memory_allocated``.

The classifier comes from ``branchspec.models.resnet`` (registry kind
"classifier") when that module exists; otherwise a stand-in conv branch with
the same stem (3→6 channels, 3×3, no bias: 162 first-layer parameters per
branch) and a small residual body is used, and the note says so.
``--quick``: 4 branches, 16 images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

STEM = 6  # stem channels of the stand-in (slim ResNet18 width for ~0.08 M parameters per branch)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.short(x))


class StandInBranch(nn.Module):
    """Stem conv 3→6 (3×3, no bias), BN, two residual stages (6, 12), pool, linear to 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM)
        self.layer1 = _Block(STEM, STEM, 1)
        self.layer2 = _Block(STEM, 2 * STEM, 2)
        self.linear = nn.Linear(2 * STEM, 10)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.layer2(self.layer1(h))
        return self.linear(h.mean((2, 3)))


def _model(m: int):
    from branchspec import Branched

    try:
        import branchspec.models.resnet  # noqa: F401  (lazy: lands in parallel)
        from branchspec.models.registry import build_model

        return build_model("classifier", {"num_branches": m}), "branchspec.models.resnet classifier"
    except Exception as exc:  # module missing or a different config API
        return (Branched(StandInBranch, m, seed=0),
                f"stand-in conv branch (branchspec.models.resnet unavailable: {type(exc).__name__})")


def _vm_kib(key: str) -> float:
    """A field of /proc/self/status in KiB (Linux), e.g. VmRSS or VmHWM (the peak RSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> float | None:
    """Reset the kernel's peak-RSS mark (write 5 to /proc/self/clear_refs) and return the RSS in MiB.

    ru_maxrss cannot be reset, so it would report the import-time peak if that
    was higher than the computation's; with the mark reset, VmHWM − RSS is
    the memory the computation itself added at its peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _vm_kib("VmRSS") / 1024
    except (OSError, KeyError):
        return None


def _measure(m: int, n: int, device: str) -> dict:
    from branchspec.branched import as_branched
    from branchspec.hessian import block_diagonality, block_norms, blockwise_hessian, select_params
    from branchspec.losses import loss_value

    model, what = _model(m)
    model = as_branched(model).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g).to(device)  # (N, 3, 32, 32)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    sub = select_params(model, "first-layer")
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = _reset_peak_rss()
    t0 = time.perf_counter()
    H, _ = blockwise_hessian(model, sub, x, y, partial(loss_value, clamp=True, reduction="sum"), budget_bytes=8 * 1024**3)
    if device == "cuda":
        torch.cuda.synchronize()
    cold = time.perf_counter() - t0
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _vm_kib("VmHWM") / 1024 - rss0 if rss0 is not None else float("nan")  # MiB above the start
    t0 = time.perf_counter()  # second call, same shapes: kernels / primitives already built
    blockwise_hessian(model, sub, x, y, partial(loss_value, clamp=True, reduction="sum"), budget_bytes=8 * 1024**3)
    if device == "cuda":
        torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    bd = block_diagonality(block_norms(H, sub.boundaries))
    return {"seconds": sec, "warmup_seconds": cold, "peak_mib": peak, "P": sub.num_params, "names": list(sub.names), "what": what,
            "block_diag": bd}


def _run(m: int, n: int, device: str) -> dict:
    """Measure in a fresh interpreter, so the max-RSS growth belongs to this computation alone."""
    env = dict(os.environ)
    src = Path(__file__).resolve().parent.parent / "src"
    if src.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, __file__, "--child", str(m), str(n), device],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"hessian benchmark child failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows(quick: bool) -> list[dict]:
    m, n = (4, 16) if quick else (16, 128)
    out = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        r = _run(m, n, dev)
        note = (f"{r['what']}; M={m}, batch {n} of 3x32x32, first layer {'+'.join(r['names'])}, "
                f"P={r['P']}, blockwise eq.13-14 method, clamped CE (6)")
        mem = "peak RSS (VmHWM, reset before the call) above the RSS at its start" if dev == "cpu" else "torch.cuda.max_memory_allocated"
        out += [
            {"name": f"first-layer Hessian time, first call ({dev})", "value": round(r["warmup_seconds"], 3),
             "unit": "s", "note": note},
            {"name": f"first-layer Hessian time, second call ({dev})", "value": round(r["seconds"], 3), "unit": "s",
             "note": "same shapes again: torch.func / conv primitive set-up already paid"},
            {"name": f"first-layer Hessian peak memory ({dev})", "value": round(r["peak_mib"], 1), "unit": "MiB",
             "note": f"{mem}, over the first call"},
            {"name": f"first-layer Hessian size ({dev})", "value": r["P"], "unit": "params",
             "note": f"block diagonality at init {r['block_diag']:.4f}"},
        ]
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(_measure(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
    else:
        for row in rows("--quick" in sys.argv):
            print(row)
