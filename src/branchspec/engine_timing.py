"""``engine="auto"`` of :class:`~branchspec.branched.Branched`: time the engines the way they will run.

:func:`measure_engines` runs the loop, fused and packed engines on the input
they are chosen for — a warm-up, then two timed passes — and returns the
fastest. A pass is what the caller will do with the model: forward and
backward when autograd is on and the branches have trainable parameters (a
training step), forward only otherwise (``torch.no_grad``, inference), in the
model's current train / eval mode. A packed engine that falls back to fused in
that mode (its check against the loop failed, :mod:`branchspec.packed_check`)
is no candidate: it would be the fused engine under the name "packed".
The backward pass is ``torch.autograd.grad`` with respect to the branch
parameters, which accumulates into no ``.grad``; buffers (BatchNorm
statistics) and the RNG states are restored afterwards, and the caller's
autograd graph is never entered (inputs are detached), so measuring has no
side effect on the model.

Example:
    >>> import torch, torch.nn as nn
    >>> from branchspec import Branched
    >>> m = Branched(lambda: nn.Linear(3, 2), 4, engine="auto", seed=0)
    >>> measure_engines(m, torch.randn(8, 3), (), {}, False) in ("loop", "fused", "packed")
    True
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from branchspec.packed import NotPackable

CANDIDATES = ("loop", "fused", "packed")


def measure_engines(model, x: Tensor, args: tuple, kwargs: dict, per_branch: bool) -> str:
    """The fastest engine of ``model`` (a ``Branched``) for input ``x``, timed as it will run (module docstring)."""
    params = [p for p in model.branches.parameters() if p.requires_grad] if torch.is_grad_enabled() else []
    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    x, args = x.detach(), tuple(a.detach() if isinstance(a, Tensor) else a for a in args)
    kwargs = {k: v.detach() if isinstance(v, Tensor) else v for k, v in kwargs.items()}
    devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []
    try:
        with torch.random.fork_rng(devices=devices):
            timings = {e: _time(model, e, x, args, kwargs, per_branch, params) for e in CANDIDATES}
    finally:
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(saved[n])
    return min(timings, key=timings.get)


def _time(model, engine: str, x: Tensor, args: tuple, kwargs: dict, per_branch: bool, params: list) -> float:
    """Seconds for two passes after a warm-up (forward, and the gradient with respect to ``params`` when there are
    any); inf for an engine that cannot run here (an op without a vmap rule) or a packed engine that falls back
    to fused in this mode."""
    def run() -> None:
        with torch.set_grad_enabled(bool(params)):
            out = model.engine_outputs(engine, x, args, kwargs, per_branch)  # (M, B, ...)
            if params and out.requires_grad:
                torch.autograd.grad(out.float().sum(), params, allow_unused=True)  # no .grad is written

    try:
        run()  # warm-up; builds and checks the packed network in this mode
        if engine == "packed" and not model.runs_packed(per_branch):
            return float("inf")
        _sync(x)
        t0 = time.perf_counter()
        run()
        run()
        _sync(x)
        return time.perf_counter() - t0
    except (RuntimeError, NotPackable):
        return float("inf")


def _sync(x: Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
