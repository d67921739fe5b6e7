"""Branched engines: forward + backward of M = 16 small conv branches, each path of the library timed.

Each branch: conv3x3(3→16)-BN-ReLU, conv3x3(16→16)-BN-ReLU, global average
pool, linear(16→10); input 32×32 RGB, batch 128, train mode. Paths, each run
through ``Branched.engine_outputs``: the Python loop (``engine="loop"``), the
loop with channels_last model and input, the vmap fallback of the packed
engine (forced: ``"vmap"``), and the packed network (``engine="packed"``, one
grouped network over (B, M·C, H, W), NCHW and channels_last, fp32 and bf16
autocast) — on the CPU, and on CUDA when available. The library never times
its engines: ``engine="packed"`` follows a capability rule (the ``Branched``
docstring); these rows are what that rule is judged by.
``quick``: M = 4, batch 8, one repetition.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from branchspec import Branched


def _branch() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(path: str, channels_last: bool, device: str, m: int, batch: int, reps: int, bf16: bool = False) -> float:
    """Seconds per forward + backward of f = Σ_k v_k computed by ``path`` ("loop", "vmap" or "packed")."""
    torch.manual_seed(0)
    model = Branched(_branch, m, engine="loop" if path == "loop" else "packed").to(device).train()
    x = torch.randn(batch, 3, 32, 32, device=device)
    if path == "packed":
        model.channels_last = channels_last  # the packed engine converts its own activations
    elif channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def once():
        model.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            f = model.engine_outputs(path, x).sum(0)  # (M, B, 10) -> f (B, 10), no residual
        f.float().square().mean().backward()

    once()  # warm-up (builds and checks the packed network)
    if path == "packed" and not model.runs_packed():
        raise RuntimeError(f"the packed network did not run: {model.engine_report()}")
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    _sync(device)
    return (time.perf_counter() - t0) / reps


def rows(quick: bool) -> list[dict]:
    m, batch, reps = (4, 8, 1) if quick else (16, 128, 5)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out = []
    for device in devices:
        r = reps * (4 if device == "cuda" else 1)
        res = {}
        for label, engine, cl, bf16 in (
            ("loop", "loop", False, False), ("loop + channels_last", "loop", True, False),
            ("vmap fallback", "vmap", False, False), ("packed NCHW", "packed", False, False),
            ("packed channels_last", "packed", True, False), ("packed NCHW bf16", "packed", False, True),
            ("packed channels_last bf16", "packed", True, True),
        ):
            res[label] = _time(engine, cl, device, m, batch, r, bf16)
            out.append({"name": f"{device}: M={m} conv branches, batch {batch}, fwd+bwd, {label}",
                        "value": round(1e3 * res[label], 2), "unit": "ms",
                        "note": f"{torch.get_num_threads()} threads" if device == "cpu"
                        else torch.cuda.get_device_name(0)})
        best = min(res, key=res.get)
        out.append({"name": f"{device}: fastest engine", "value": best, "unit": "",
                    "note": f"loop / packed channels_last time ratio {res['loop'] / res['packed channels_last']:.2f}, "
                            f"loop / packed bf16 {res['loop'] / res['packed channels_last bf16']:.2f}"})
    return out
