"""Per-part gradient norms and the Hessian block structure of an unmodified model (§5.2, §8, Fig. 5).

The parameters of part k are slices of the model's own parameters
(:meth:`PartSpec.param_slices`: for an attention head, its rows of the q/k/v
projections and its columns of W_O). :class:`PartLayout` lays them out part
by part in one flat vector θ, so that a Hessian over θ has one diagonal
block per part — exactly the block structure the paper studies for
branches (Fig. 5 panels 3–4, eq. 12–14). The loss as a function of θ is
evaluated with :func:`torch.func.functional_call` on the unmodified model
(each sliced parameter reassembled with ``slice_scatter``; attention runs its
composite "math" kernel, since the fused CPU/GPU kernels have no forward-mode
derivative), and the Hessian
is taken with the functions of :mod:`branchspec.hessian`: exact
(:func:`~branchspec.hessian.dense_hessian`, P forward-over-reverse
products) for small P, probe estimates of the block norms
(:func:`~branchspec.hessian.probe_blocks`, K·M products) for large P.

Example:
    >>> import torch, torch.nn as nn
    >>> from branchspec.parts import groups
    >>> conv = nn.Conv1d(4, 4, 1, groups=2)
    >>> lay = part_layout(conv, groups(conv))
    >>> lay.boundaries, lay.labels[0]
    ((0, 4, 8), 'weight[0:2]')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from branchspec.hessian import (
    DEFAULT_BUDGET_BYTES,
    ProbeEstimate,
    block_summary,
    check_budget,
    dense_hessian,
    hvp_fn,
    probe_blocks,
)
from branchspec.parts.core import eval_mode
from branchspec.parts.spec import ParamSlice, PartSpec, module_name

LossFn = Callable[[Any, Any], Tensor]


@dataclass(frozen=True)
class PartLayout:
    """Part k's parameter slices, laid out part by part: θ rows ``boundaries[k]:boundaries[k+1]``.

    ``slices[k]``: ``(full parameter name in the model, ParamSlice)`` pairs.
    """

    slices: tuple[tuple[tuple[str, ParamSlice], ...], ...]
    sizes: tuple[int, ...]  # scalars of each part

    @property
    def boundaries(self) -> tuple[int, ...]:
        out = [0]
        for s in self.sizes:
            out.append(out[-1] + s)
        return tuple(out)

    @property
    def num_params(self) -> int:
        return sum(self.sizes)

    @property
    def names(self) -> list[str]:
        """Full names of the model parameters any part touches, in first-use order."""
        seen: dict[str, None] = {}
        for part in self.slices:
            for name, _ in part:
                seen.setdefault(name)
        return list(seen)

    @property
    def labels(self) -> list[str]:
        """``name[start:stop]`` of each slice, part by part."""
        return [f"{n}[{s.start}:{s.stop}]" for part in self.slices for n, s in part]

    def flat(self, model: nn.Module) -> Tensor:
        """θ, the current values, ``(P,)``."""
        params = dict(model.named_parameters())
        return torch.cat([s.take(params[n]).detach().reshape(-1) for part in self.slices for n, s in part])

    def params(self, model: nn.Module, theta: Tensor) -> dict[str, Tensor]:
        """``{full name: tensor}`` with every slice replaced by its entries of ``theta`` (differentiable)."""
        base = dict(model.named_parameters())
        out = {n: base[n].detach() for n in self.names}
        i = 0
        for part in self.slices:
            for n, s in part:
                shape = s.take(out[n]).shape
                size = shape.numel()
                out[n] = torch.slice_scatter(out[n], theta[i:i + size].reshape(shape), s.dim, s.start, s.stop)
                i += size
        return out

    def grad_norms(self, grads: dict[str, Tensor | None]) -> Tensor:
        """‖∂L/∂θ_k‖ of each part from full-parameter gradients ``{name: grad}``, ``(M,)``."""
        out = torch.zeros(len(self.slices), dtype=torch.float64)
        for k, part in enumerate(self.slices):
            out[k] = sum(s.take(g).double().pow(2).sum().item() for n, s in part if (g := grads.get(n)) is not None)
        return out.sqrt()


def part_layout(model: nn.Module, spec: PartSpec) -> PartLayout:
    """The :class:`PartLayout` of ``spec`` inside ``model`` (module docstring)."""
    prefixes: dict[int, str] = {}  # id(module) -> its name in the model

    def full_name(s: ParamSlice) -> str:
        owner = spec.module if s.owner is None else s.owner
        if id(owner) not in prefixes:
            prefixes[id(owner)] = module_name(model, owner)
        return f"{prefixes[id(owner)]}.{s.name}" if prefixes[id(owner)] else s.name

    params = dict(model.named_parameters())
    parts, sizes = [], []
    for k in range(spec.num_parts):
        part = tuple((full_name(s), s) for s in spec.param_slices(k))
        parts.append(part)
        sizes.append(sum(s.numel(params[n]) for n, s in part))
    return PartLayout(tuple(parts), tuple(sizes))


def gradient_norms(model: nn.Module, spec: PartSpec, x: Any = None, y: Any = None, loss_fn: LossFn | None = None,
                   *, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Tensor:
    """‖∂L/∂θ_k‖ for every part k, ``(M,)`` (the per-branch gradient of eq. 10).

    With ``x`` / ``y`` / ``loss_fn``: L = ``loss_fn(model(x, *args, **kwargs), y)``
    in the model's current mode, gradients taken without touching ``.grad``.
    Without them: read from the ``.grad`` the last ``backward()`` left (free
    inside a training loop).
    """
    layout = part_layout(model, spec)
    params = dict(model.named_parameters())
    names = layout.names
    if loss_fn is None:
        return layout.grad_norms({n: params[n].grad for n in names})
    loss = loss_fn(model(x, *args, **(kwargs or {})), y)
    grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    return layout.grad_norms(dict(zip(names, grads)))


def part_loss(model: nn.Module, layout: PartLayout, x: Any, y: Any, loss_fn: LossFn, args: tuple[Any, ...] = (),
              kwargs: dict[str, Any] | None = None) -> Callable[[Tensor], Tensor]:
    """θ ↦ ``loss_fn(model(x, *args, **kwargs), y)`` with every other parameter fixed."""
    kwargs = kwargs or {}

    def loss_of(theta: Tensor) -> Tensor:
        return loss_fn(functional_call(model, layout.params(model, theta), (x, *args), kwargs), y)

    return loss_of


def part_hessian(model: nn.Module, spec: PartSpec, x: Any, y: Any, loss_fn: LossFn, *, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, chunk_size: int | None = 32,
                 budget_bytes: float = DEFAULT_BUDGET_BYTES) -> tuple[Tensor, PartLayout]:
    """The exact ``(P, P)`` Hessian over the parts' parameters, rows part by part: ``(H, layout)``.

    In eval mode; ``block_norms(H, layout.boundaries)`` gives the M×M block
    norms of Fig. 5. Cost: P Hessian-vector products (≈ 3 model passes each);
    refuses (one line) when 2·P² values exceed ``budget_bytes``.
    """
    layout = part_layout(model, spec)
    itemsize = next(model.parameters()).element_size()
    check_budget(2 * layout.num_params**2 * itemsize, budget_bytes,
                 f"the exact Hessian of {layout.num_params} part parameters",
                 "estimate the block norms with probe_part_blocks instead")
    with eval_mode(model), sdpa_kernel(SDPBackend.MATH):
        H = dense_hessian(part_loss(model, layout, x, y, loss_fn, args, kwargs), layout.flat(model), chunk_size)
    return H.detach(), layout


def probe_part_blocks(model: nn.Module, spec: PartSpec, x: Any, y: Any, loss_fn: LossFn, *, probes: int = 16,
                      seed: int = 0, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                      chunk_size: int | None = 8) -> ProbeEstimate:
    """Probe estimates of the M×M block norms ‖H_kl‖_F (K·M Hessian-vector products, H never formed)."""
    layout = part_layout(model, spec)
    with eval_mode(model), sdpa_kernel(SDPBackend.MATH):
        theta = layout.flat(model)
        hvp = hvp_fn(part_loss(model, layout, x, y, loss_fn, args, kwargs), theta)
        return probe_blocks(hvp, theta, layout.boundaries, probes=probes, seed=seed, chunk_size=chunk_size)


def block_structure(model: nn.Module, spec: PartSpec, x: Any, y: Any, loss_fn: LossFn, *, method: str = "auto",
                    exact_max_params: int = 4096, probes: int = 16, seed: int = 0, args: tuple[Any, ...] = (),
                    kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready block structure of the parts' Hessian: exact for P ≤ ``exact_max_params``, else probes.

    ``method``: ``"auto"``, ``"exact"`` or ``"probes"``. The result names the
    method, P and the boundaries, plus :func:`~branchspec.hessian.block_summary`
    (exact) or :meth:`~branchspec.hessian.ProbeEstimate.summary` (probes).
    """
    if method not in ("auto", "exact", "probes"):
        raise ValueError(f"method must be auto, exact or probes, got {method!r}")
    layout = part_layout(model, spec)
    if method == "auto":
        method = "exact" if layout.num_params <= exact_max_params else "probes"
    res: dict[str, Any] = {"method": method, "num_params": layout.num_params, "boundaries": list(layout.boundaries),
                 "parts": spec.labels}
    if method == "exact":
        H, _ = part_hessian(model, spec, x, y, loss_fn, args=args, kwargs=kwargs)
        res.update(block_summary(H, layout.boundaries))
    else:
        res.update(probe_part_blocks(model, spec, x, y, loss_fn, probes=probes, seed=seed, args=args,
                                     kwargs=kwargs).summary())
    return res


