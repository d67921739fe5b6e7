"""Channel groups of a grouped convolution, and the branches of a ``Branched``, as parts.

**Groups.** A convolution with ``groups = G > 1`` computes the output
channels of group g from the input channels of group g only. Its parts are
therefore *disjoint channel groups*: v_g is the layer's output (bias
removed) on group g's channels, embedded in the full output shape with zeros
elsewhere, and R is the bias, so f = R + Σ_g v_g holds exactly (eq. 1). The
contributions never overlap, so the F·Fᵀ of flattened responses is diagonal
by construction; compare groups with ``response_matrix(V, "norm")``
(F[g, j] = ‖v_g(x_j)‖), whose correlation says which groups respond to the
same samples (§4.1). Group g depends on rows g·C_out/G:(g+1)·C_out/G of the
weight (its Hessian block).

**Branches.** :func:`branches` treats a :class:`~branchspec.Branched`
(e.g. one inside a larger network) the same way: v_k = g_k · v_k(x) with its
silencing gain, R its residual; branch k depends on ``branches.k.*``.

Example:
    >>> import torch, torch.nn as nn
    >>> conv = nn.Conv2d(4, 6, 3, groups=2)
    >>> spec = groups(conv)
    >>> spec.num_parts, spec.param_slices(1)[0]
    (2, ParamSlice(name='weight', dim=0, start=3, stop=6))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from branchspec.branched import Branched
from branchspec.errors import BranchspecError
from branchspec.parts.spec import ParamSlice, PartSpec, Split, bind, expand_rest, whole

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Groups(PartSpec):
    """The G channel groups of a grouped ``nn.Conv{1,2,3}d`` (contributions ``(G, B, C_out, ...)``)."""

    kind = "groups"

    def __init__(self, conv: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> None:
        self.module = self.conv = conv
        self.num_parts = conv.groups
        self.per_group = conv.out_channels // conv.groups

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Split:
        f = output  # (B, C_out, ...)
        rest = expand_rest(self.conv.bias, f, 1)
        core = f if rest is None else f - rest
        g, c = self.num_parts, self.per_group
        mask = torch.zeros(g, 1, g, c, dtype=f.dtype, device=f.device)  # (G, 1, G, C/G)
        mask[torch.arange(g), 0, torch.arange(g)] = 1
        mask = mask.reshape(g, 1, g * c, *([1] * (f.dim() - 2)))  # (G, 1, C_out, 1, ...)
        return Split(mask * core[None], rest, f)  # (G, B, C_out, ...): group g's channels, zeros elsewhere

    def param_slices(self, k: int) -> list[ParamSlice]:
        return [ParamSlice("weight", 0, k * self.per_group, (k + 1) * self.per_group)]


class Branches(PartSpec):
    """The M branches of a :class:`~branchspec.Branched` (contributions ``(M, B, ...)``, gains applied)."""

    kind = "branches"

    def __init__(self, model: Branched) -> None:
        self.module = self.model = model
        self.num_parts = model.num_branches

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Split:
        call = bind(self.model, args, kwargs)
        call.pop("return_branches", None)
        x = call.pop("x")
        extra = call.pop("args", ())
        f, v, rest = self.model.forward_all(x, *extra, **call)  # v: (M, B, ...)
        gain = self.model.branch_gain.to(v.dtype).view(-1, *([1] * (v.dim() - 1)))  # (M, 1, ...)
        out = output[0] if isinstance(output, tuple) else output
        return Split(gain * v, rest, out)

    def replace_output(self, output: Any, f: Tensor) -> Any:
        return (f, *output[1:]) if isinstance(output, tuple) else f

    def param_slices(self, k: int) -> list[ParamSlice]:
        return [whole(f"branches.{k}.{n}", p) for n, p in self.model.branches[k].named_parameters()]


def groups(conv: nn.Module) -> Groups:
    """The channel groups of a grouped convolution as parts (module docstring)."""
    if not isinstance(conv, CONVS):
        raise BranchspecError(f"groups() takes an nn.Conv1d/2d/3d, got {type(conv).__name__}")
    return Groups(conv)


def branches(model: Branched) -> Branches:
    """The branches of a :class:`~branchspec.Branched` as parts (module docstring)."""
    if not isinstance(model, Branched):
        raise BranchspecError(f"branches() takes a Branched model, got {type(model).__name__}")
    return Branches(model)
