"""The engine choices of :class:`~branchspec.branched.Branched` and the paths besides the packed network.

:data:`ENGINES` are the two public choices, ``"loop"`` and ``"packed"``. The
packed engine (:mod:`branchspec.packed`) falls back, where the branch does
not pack, to :func:`vmap_outputs` — the branch parameters stacked
(:func:`stacked_state`) and the branch function vectorised with
:func:`torch.func.vmap` — and where vmap cannot run the branch either, to
:func:`loop_outputs`. :class:`VmapFallback` makes that last decision once per
input kind and mode, at the first call, never by timing, so a resumed run
takes the same path. Timing the paths is ``benchmarks/bench_engine.py``.

Example:
    >>> import torch, torch.nn as nn
    >>> branches = [nn.Linear(3, 2) for _ in range(4)]
    >>> x = torch.randn(5, 3)
    >>> v = vmap_outputs(branches, x, False, (), {}, training=False)  # (M, B, 2)
    >>> v.shape, torch.allclose(v, loop_outputs(branches, x, False, (), {}), atol=1e-6)
    (torch.Size([4, 5, 2]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

ENGINES = ("loop", "packed")  # the public choices of Branched(engine=...); "packed" is the default
VMAP = "vmap"  # packed's fallback where the branch does not pack; Branched.engine_outputs(VMAP, ...) forces it
ENGINE_HELP = ("Branched engine: packed (the packed network; vmap where the branches do not pack; the loop "
               "where vmap cannot run them: a rule, not a timing, so --resume is exact) or loop")
"""The help of every trainer's ``--engine`` option (the configs' ``engine`` fields)."""


def loop_outputs(branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Tensor:
    """Branch k on ``x`` (on ``x[k]`` when ``per_branch``), one by one: the reference, ``(M, B, ...)``."""
    outs = [branch(x[k] if per_branch else x, *args, **kwargs) for k, branch in enumerate(branches)]
    return torch.stack(outs)  # (M, B, ...)


def stacked_state(branches: Sequence[nn.Module]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Parameters and buffers of all branches stacked on a leading M axis, each ``{name: (M, ...)}``;
    differentiable: gradients reach every branch's own parameters."""
    names = [n for n, _ in branches[0].named_parameters()]
    per = [dict(b.named_parameters()) for b in branches]
    params = {n: torch.stack([p[n] for p in per]) for n in names}  # (M, ...)
    bnames = [n for n, _ in branches[0].named_buffers()]
    perb = [dict(b.named_buffers()) for b in branches]
    buffers = {n: torch.stack([b[n] for b in perb]) for n in bnames}  # (M, ...)
    return params, buffers


def vmap_outputs(branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple[Any, ...],
                 kwargs: dict[str, Any], training: bool) -> Tensor:
    """The first branch's function vmapped over the stacked state of all, ``(M, B, ...)``; in ``training`` the
    buffers it moved (BatchNorm statistics) are written back to each branch, as the loop moves them."""
    params, buffers = stacked_state(branches)
    template = branches[0]

    def one(p: dict[str, Tensor], b: dict[str, Tensor], xin: Tensor) -> Tensor:
        out: Tensor = functional_call(template, (p, b), (xin, *args), kwargs)
        return out

    in_dims = (0, 0, 0 if per_branch else None)
    out: Tensor = vmap(one, in_dims=in_dims, randomness="different")(params, buffers, x)  # (M, B, ...)
    if buffers and training:
        with torch.no_grad():  # the stacked copies were updated in place: write them back
            for k, branch in enumerate(branches):
                for n, buf in branch.named_buffers():
                    buf.copy_(buffers[n][k])
    return out


class VmapFallback:
    """Packed's fallback: vmap, or the loop where vmap cannot run the branch, decided at the first call per input
    kind (shared / per-branch) and mode (train / eval). A ``RuntimeError`` of that call (an op without a batching
    rule, ``.item()``, data-dependent control flow; out of memory aside) after which the loop runs is recorded,
    the RNG put back first, so the loop draws what it would have drawn alone; one the loop raises too is the
    caller's error (a wrong input), raised with nothing recorded. Once vmap ran, its later errors are raised."""

    def __init__(self) -> None:
        self.why: dict[tuple[bool, bool], str] = {}  # (per_branch, training) -> "" (vmap runs) or why the loop runs

    def outputs(self, branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple[Any, ...],
                kwargs: dict[str, Any], training: bool) -> Tensor:
        key = (per_branch, training)
        if key in self.why:
            if self.why[key]:
                return loop_outputs(branches, x, per_branch, args, kwargs)
            return vmap_outputs(branches, x, per_branch, args, kwargs, training)
        rng = _rng_state(x.device)
        try:
            out = vmap_outputs(branches, x, per_branch, args, kwargs, training)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as err:
            _set_rng_state(x.device, rng)
            out = loop_outputs(branches, x, per_branch, args, kwargs)
            self.why[key] = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0][:160]
            return out
        self.why[key] = ""
        return out

    def annotate(self, report: dict[str, str]) -> dict[str, str]:
        """``report`` (input kind -> path) with the modes where the loop runs instead of vmap, and why."""
        fails: dict[str, tuple[list[str], str]] = {}
        for (per_branch, training), why in self.why.items():
            if why:
                fails.setdefault("per-branch" if per_branch else "shared", ([], why))[0].append(
                    "training" if training else "eval")
        for kind, (modes, why) in fails.items():
            if kind in report:
                report[kind] += f"; the loop in {' and '.join(modes)} mode: vmap cannot run the branch ({why})"
        return report


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The CPU generator's state, and the device's when it is a CUDA one."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
