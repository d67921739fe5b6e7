"""Reflect / replicate padding of 4-D activations as one opaque operator, for ``torch.compile``.

The generator's 3×3 convolutions reflect-pad their input (no border frame in
the components, §7). Eagerly that is ``F.pad(x, mode="reflect")``. Under
``torch.compile`` on CPU, Inductor lowers the padding and its backward into
generated index loops that were slower than the eager kernels (the compiled
64² generator step got *slower* with reflect padding, measured in
``benchmarks/bench_gan64.py``). :func:`pad2d` is a ``torch.library`` custom
operator with its own backward (ATen's reflection / replication pad
kernels forward, slice folding backward), so the compiler keeps it as one call and still fuses everything
around it. Eager results are identical to ``F.pad``.

Example:
    >>> import torch
    >>> x = torch.arange(9.0).view(1, 1, 3, 3)
    >>> pad2d(x, 1, "reflect")[0, 0, 0].tolist()
    [4.0, 3.0, 4.0, 5.0, 4.0]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

MODES = ("reflect", "replicate")


@torch.library.custom_op("branchspec::pad2d", mutates_args=())
def _pad2d(x: Tensor, pad: int, mode: str) -> Tensor:
    return F.pad(x, (pad, pad, pad, pad), mode=mode)


@_pad2d.register_fake
def _pad2d_fake(x: Tensor, pad: int, mode: str) -> Tensor:
    shape = (*x.shape[:2], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad)
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format
    return x.new_empty(shape).contiguous(memory_format=fmt)


def _fold(g: Tensor, p: int, dim: int, mode: str) -> Tensor:
    """The gradient of padding ``p`` on ``dim``: each padded slice added back to the slice it copied."""
    n = g.shape[dim] - 2 * p
    core = g.narrow(dim, p, n).clone()
    lo, hi = g.narrow(dim, 0, p), g.narrow(dim, n + p, p)
    if mode == "reflect":  # padded index p-1-i mirrors 1+i; n+p+i mirrors n-2-i
        core.narrow(dim, 1, p).add_(lo.flip(dim))
        core.narrow(dim, n - 1 - p, p).add_(hi.flip(dim))
    else:  # replicate: every padded slice copies the edge slice
        core.narrow(dim, 0, 1).add_(lo.sum(dim, keepdim=True))
        core.narrow(dim, n - 1, 1).add_(hi.sum(dim, keepdim=True))
    return core


@torch.library.custom_op("branchspec::pad2d_backward", mutates_args=())
def _pad2d_backward(grad: Tensor, x: Tensor, pad: int, mode: str) -> Tensor:
    return _fold(_fold(grad, pad, 3, mode), pad, 2, mode)  # columns, then rows


@_pad2d_backward.register_fake
def _pad2d_backward_fake(grad: Tensor, x: Tensor, pad: int, mode: str) -> Tensor:
    return torch.empty_like(x)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(inputs[0])
    ctx.pad, ctx.mode = inputs[1], inputs[2]


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
    (x,) = ctx.saved_tensors
    return _pad2d_backward(grad, x, ctx.pad, ctx.mode), None, None


_pad2d.register_autograd(_backward, setup_context=_setup)


def pad2d(x: Tensor, pad: int, mode: str) -> Tensor:
    """``F.pad(x, (pad,) * 4, mode)`` for 4-D ``x`` (B, C, H, W) and ``mode`` in :data:`MODES`."""
    if mode not in MODES or x.dim() != 4:
        raise ValueError(f"pad2d: mode must be one of {MODES} on a 4-D tensor, got {mode!r}, {x.dim()}-D")
    out: Tensor = _pad2d(x, int(pad), mode)
    return out
