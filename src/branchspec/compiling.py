"""``torch.compile`` of a training forward that holds a :class:`~branchspec.Branched` (a service both trainers use).

The packed engine builds its grouped network at the first forward, after checking it against the loop
(``packed_check``). Compiling before that would make dynamo trace the packing code and recompile whenever its
caches change; one eager call first packs the branches, so the compiled graph holds only the packed network's
convolutions, norms and activations, which inductor fuses (a BatchNorm + ReLU pair becomes one pass over memory
— what makes a network of M thin branches, whose activations hold √M times the channels of a dense network of
equal FLOPs, memory-bound in eager mode).

The warm call runs without autograd and leaves the model as it found it: BatchNorm running statistics and
every RNG state are restored, so a compiled run trains the same sequence of steps as an eager one (the values
differ only by the fused kernels' rounding).

``compile_mode`` is torch.compile's ``mode``: ``"reduce-overhead"`` records the compiled graph as CUDA graphs
where the shapes are static — one launch per step instead of one per kernel, for a GPU step bound by kernel
launches (M thin branches at a small batch); on a CPU it compiles like ``"default"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from branchspec.options import option

if TYPE_CHECKING:  # the configs import the modes: no torch at import time
    from torch import nn


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
COMPILE_MODE_HELP = ("torch.compile mode with --compile: default; reduce-overhead (CUDA graphs where shapes are "
                     "static: for a GPU step bound by kernel launches); max-autotune")


def compile_mode_option(group: str) -> Any:
    """The ``--compile-mode`` field of a trainer's config (:func:`branchspec.options.option`): one definition
    for both trainers."""
    return option("default", COMPILE_MODE_HELP, choices=COMPILE_MODES, group=group)


def compile_after_warmup(fn: Callable[..., Any], model: nn.Module, *args: Any, compile_mode: str = "default",
                         **kwargs: Any) -> Callable[..., Any]:
    """``torch.compile(fn, mode=compile_mode)`` after one eager ``fn(*args, **kwargs)`` under ``no_grad`` that packs
    ``model``'s branches; ``model``'s buffers and the CPU / CUDA RNG states are restored after it."""
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
    import torch

    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        with torch.no_grad():
            fn(*args, **kwargs)
    finally:
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(saved[n])
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return torch.compile(fn, mode=None if compile_mode == "default" else compile_mode)


__all__ = ["COMPILE_MODES", "COMPILE_MODE_HELP", "compile_after_warmup", "compile_mode_option"]
