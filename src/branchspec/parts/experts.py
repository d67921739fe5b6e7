"""Experts of a gated mixture as parts: f(x) = R(x) + Σ_e g_e(x) · E_e(x) (eq. 1 with v_e = g_e E_e).

A mixture-of-experts layer weighs the outputs of E expert networks by a gate
and sums them — the paper's branches with a learnt, input-dependent gain.
The user names, as attributes of the layer (dotted paths) or as modules:

* ``experts`` — the experts, an ``nn.ModuleList`` (each maps the layer's
  input ``(B, ..., D_in)`` to ``(B, ..., D_out)``);
* ``gate`` — the module whose output, passed through ``weights`` (default:
  softmax over the last axis), gives g(x) ``(B, ..., E)``. A top-k router
  is described by a ``weights`` function that zeroes the unselected experts;
* ``rest`` — optional module computing R(x) (e.g. a shared expert).

In the hook every expert and the gate are run on the layer's input (dense
evaluation, also for a layer that dispatches tokens sparsely) and the sum is
checked against the layer's own output, so a layer computing something else
is refused in one line. Expert e depends on its own parameters only (the
gate's parameters mix all experts and belong to no part).

Example:
    >>> import torch, torch.nn as nn
    >>> class MoE(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.experts = nn.ModuleList(nn.Linear(4, 3) for _ in range(5))
    ...         self.gate = nn.Linear(4, 5)
    ...     def forward(self, x):
    ...         g = self.gate(x).softmax(-1)
    ...         return sum(g[..., e, None] * ex(x) for e, ex in enumerate(self.experts))
    >>> moe = MoE()
    >>> spec = experts(moe)
    >>> spec.num_parts, [s.name for s in spec.param_slices(2)]
    (5, ['experts.2.weight', 'experts.2.bias'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from branchspec.errors import BranchspecError
from branchspec.parts.spec import ParamSlice, PartSpec, Split, first_tensor, module_name, replace_first, whole


def softmax_weights(gate_output: Tensor) -> Tensor:
    """The default gate weights: softmax over the last (expert) axis."""
    return gate_output.softmax(-1)


def _resolve(layer: nn.Module, what: str | nn.Module | None) -> nn.Module | None:
    return None if what is None else _require(layer, what)


def _require(layer: nn.Module, what: str | nn.Module) -> nn.Module:
    if isinstance(what, nn.Module):
        return what
    try:
        return layer.get_submodule(what)
    except AttributeError as e:
        raise BranchspecError(f"{type(layer).__name__} has no submodule {what!r}") from e


class Experts(PartSpec):
    """The E experts of a gated mixture layer (contributions ``(E, B, ..., D_out)``)."""

    kind = "experts"

    def __init__(self, layer: nn.Module, experts: str | Sequence[nn.Module] = "experts",
                 gate: str | nn.Module = "gate", weights: Callable[[Tensor], Tensor] = softmax_weights,
                 rest: str | nn.Module | None = None) -> None:
        self.module = layer
        mods = list(_require(layer, experts).children()) if isinstance(experts, str) else list(experts)
        if not mods:
            raise BranchspecError(f"{type(layer).__name__}: no experts named by {experts!r}")
        self.experts = mods
        self.gate = _require(layer, gate)
        self.weights = weights
        self.rest_module = _resolve(layer, rest)
        self.num_parts = len(mods)
        self.prefixes = [module_name(layer, m) for m in mods]

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Split:
        x = args[0] if args else next(iter(kwargs.values()))  # (B, ..., D_in)
        outs = torch.stack([e(x) for e in self.experts])  # (E, B, ..., D_out)
        g = self.weights(self.gate(x))  # (B, ..., E)
        if g.shape[-1] != self.num_parts:
            raise BranchspecError(f"the gate gives {g.shape[-1]} weights for {self.num_parts} experts")
        parts = g.movedim(-1, 0).unsqueeze(-1) * outs  # (E, B, ..., D_out): v_e = g_e · E_e(x)
        rest = None if self.rest_module is None else first_tensor(self.rest_module(x))
        return Split(parts, rest, first_tensor(output))

    def replace_output(self, output: Any, f: Tensor) -> Any:
        return replace_first(output, f)

    def param_slices(self, k: int) -> list[ParamSlice]:
        pre = self.prefixes[k]
        return [whole(f"{pre}.{n}" if pre else n, p) for n, p in self.experts[k].named_parameters()]


def experts(layer: nn.Module, experts: str | Sequence[nn.Module] = "experts", gate: str | nn.Module = "gate", *,
            weights: Callable[[Tensor], Tensor] = softmax_weights, rest: str | nn.Module | None = None) -> Experts:
    """The experts of a gated mixture layer as parts (module docstring)."""
    return Experts(layer, experts, gate, weights, rest)
