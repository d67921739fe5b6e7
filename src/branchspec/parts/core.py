"""Per-part contributions of an unmodified model, through forward hooks; ablation by hooks.

:func:`contributions` runs the model once with a forward hook on the part
module of a :class:`~branchspec.parts.spec.PartSpec`; the hook splits what
the module computed into the ``(M, B, ...)`` contributions v_k and the rest
R, and checks f = R + Σ_k v_k (eq. 1) numerically. The model is not copied
or rewritten; its modes and parameters are left as they were. The result
feeds every function of :mod:`branchspec.metrics` (response matrix F,
covariance F·Fᵀ, correlation, activity: §4.1, Figs. 3–5).

:func:`silenced` / :func:`kept` are the ablations of §6 (Fig. 7) on the
unmodified model: inside the block a forward hook replaces the module's
output by R + Σ_k g_k v_k with g_k ∈ {0, 1}.

Example:
    >>> import torch, torch.nn as nn
    >>> from branchspec import parts, metrics
    >>> mha = nn.MultiheadAttention(8, 4, batch_first=True)
    >>> x = torch.randn(3, 5, 8)                       # (B, L, E)
    >>> c = parts.contributions(mha, parts.heads(mha), x, args=(x, x))   # model = mha here
    >>> c.parts.shape, metrics.activity(metrics.response_matrix(c.parts)).active
    (torch.Size([4, 3, 5, 8]), 4)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from branchspec import metrics
from branchspec.errors import BranchspecError
from branchspec.parts.spec import PartSpec, Split, check_split

DEFAULT_TOL = 1e-4  # relative max error allowed in f = R + Σ_k v_k (float32 sums of a few hundred terms)


@dataclass(frozen=True)
class Contributions:
    """Per-part contributions of one batch, f = R + Σ_k v_k (eq. 1).

    ``parts`` ``(M, B, ...)``: v_k, branch axis first; ``rest``: R
    ``(B, ...)`` or ``None``; ``output``: the part module's output f, batch
    first; ``model_output``: what the whole model returned; ``labels``: part
    names; ``residual_error``: max |f − R − Σ_k v_k| / max |f| as measured.
    """

    parts: Tensor
    rest: Tensor | None
    output: Tensor
    model_output: Any
    labels: list[str]
    residual_error: float

    def response(self, reduction: str = "auto") -> Tensor:
        """The response matrix F of §4.1 (:func:`branchspec.metrics.response_matrix`)."""
        return metrics.response_matrix(self.parts, reduction)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Every submodule in eval mode inside the block; each one's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def hooked(spec: PartSpec, on_split: Callable[[Split, Any], Any]) -> Iterator[None]:
    """A forward hook on ``spec.module`` calling ``on_split(split, output)`` on each call.

    ``on_split`` may return a replacement for the module's output. Calls the
    spec makes of the module itself while splitting are not hooked.
    """
    busy = [False]

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        if busy[0]:
            return None
        busy[0] = True
        try:
            return on_split(spec.split(args, kwargs, output), output)
        finally:
            busy[0] = False

    handle = spec.module.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _run(model: nn.Module, spec: PartSpec, x: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
         ) -> tuple[list[Split], Any]:
    seen: list[Split] = []
    with hooked(spec, lambda sp, out: seen.append(sp)):
        y = model(x, *args, **kwargs)
    return seen, y


def contributions(model: nn.Module, spec: PartSpec, x: Any, *, args: tuple[Any, ...] = (),
                  kwargs: dict[str, Any] | None = None, mode: str = "eval", grad: bool = False, check: bool = True,
                  tol: float = DEFAULT_TOL) -> Contributions:
    """The per-part contributions of ``spec`` for inputs ``x`` (module docstring).

    Args:
        model: any ``nn.Module`` containing ``spec.module``; called as
            ``model(x, *args, **kwargs)`` once.
        spec: from :func:`~branchspec.parts.heads`, :func:`~branchspec.parts.experts`,
            :func:`~branchspec.parts.groups` or :func:`~branchspec.parts.branches`.
        mode: ``"eval"`` (every module in eval mode during the pass, modes
            restored after — dropout would break the sum) or ``"current"``.
        grad: keep the autograd graph (default: detached tensors).
        check / tol: raise when max |f − R − Σ_k v_k| > tol · max |f|.

    The part module must run exactly once per forward pass. A module skipped
    by a fused inference kernel (PyTorch's Transformer fast path runs under
    ``no_grad``) is caught: the pass is repeated with autograd enabled.
    """
    if mode not in ("eval", "current"):
        raise ValueError(f"mode must be 'eval' or 'current', got {mode!r}")
    kwargs = kwargs or {}
    ctx = eval_mode(model) if mode == "eval" else contextlib.nullcontext()
    with ctx:
        with torch.set_grad_enabled(grad):
            seen, y = _run(model, spec, x, args, kwargs)
        if not seen and not grad:  # a fused kernel bypassed the module: run the module-by-module path
            with torch.enable_grad():
                seen, y = _run(model, spec, x, args, kwargs)
            seen = [Split(s.parts.detach(), None if s.rest is None else s.rest.detach(), s.output.detach())
                    for s in seen]
            y = y.detach() if isinstance(y, Tensor) else y
    if len(seen) != 1:
        raise BranchspecError(f"the part module {type(spec.module).__name__} ran {len(seen)} times in one forward "
                              "pass; contributions need exactly one call")
    sp = seen[0]
    if check:
        check_split(sp, spec, tol)
    return Contributions(sp.parts, sp.rest, sp.output, y, spec.labels, sp.residual_error())


def ranking(parts: Tensor | Contributions, reduction: str = "auto") -> list[int]:
    """Parts ordered by ‖F_k‖ (most active first), F the response matrix (§4.1)."""
    v = parts.parts if isinstance(parts, Contributions) else parts
    norms = metrics.branch_norms(metrics.response_matrix(v, reduction))  # (M,)
    return [int(k) for k in torch.argsort(norms, descending=True, stable=True)]


@contextlib.contextmanager
def scaled(model: nn.Module, spec: PartSpec, gains: Tensor) -> Iterator[nn.Module]:
    """Inside the block the part module outputs R + Σ_k g_k v_k (``gains``: ``(M,)``)."""
    if gains.shape != (spec.num_parts,):
        raise ValueError(f"gains must have shape ({spec.num_parts},), got {tuple(gains.shape)}")

    def replace(sp: Split, output: Any) -> Any:
        drop = (1 - gains.to(sp.parts)).view(-1, *([1] * (sp.parts.dim() - 1)))  # (M, 1, ...)
        return spec.replace_output(output, sp.output - (drop * sp.parts).sum(0))

    with hooked(spec, replace):
        yield model


def _indices(spec: PartSpec, which: int | Iterable[int]) -> list[int]:
    idx = [which] if isinstance(which, int) else [int(k) for k in which]
    for k in idx:
        if not 0 <= k < spec.num_parts:
            raise IndexError(f"part index {k} out of range 0..{spec.num_parts - 1}")
    return idx


@contextlib.contextmanager
def silenced(model: nn.Module, spec: PartSpec, which: int | Iterable[int]) -> Iterator[nn.Module]:
    """Ablation: the parts ``which`` contribute 0 inside the block (like :meth:`Branched.silenced`).

    Example:
        >>> import torch, torch.nn as nn
        >>> from branchspec.parts import groups
        >>> conv = nn.Conv1d(4, 4, 1, groups=2, bias=False)
        >>> with silenced(conv, groups(conv), 0):
        ...     conv(torch.ones(1, 4, 3))[0, :2].abs().max().item()
        0.0
    """
    gains = torch.ones(spec.num_parts)
    gains[_indices(spec, which)] = 0.0
    with scaled(model, spec, gains):
        yield model


@contextlib.contextmanager
def kept(model: nn.Module, spec: PartSpec, which: int | Iterable[int]) -> Iterator[nn.Module]:
    """Ablation: only the parts ``which`` contribute inside the block (keep top-k: ``ranking(c)[:k]``)."""
    gains = torch.zeros(spec.num_parts)
    gains[_indices(spec, which)] = 1.0
    with scaled(model, spec, gains):
        yield model
