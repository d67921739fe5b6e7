"""Exact Hessians of a branched model over a parameter subset; block structure (§5.2, §8, Fig. 5).

The paper's mechanism claim (§5.2, §8): inter-branch Hessian entries
∂²L/∂w_k∂w_l (k ≠ l) carry the distributive factor ∂v_k/∂w_k (eq. 14), so
where that factor vanishes the Hessian becomes block diagonal, one block per
branch (Fig. 5, panels 3–4). This module makes that measurable:

* :func:`select_params` — a :class:`ParamSubset` of every branch (the first
  layer, the last layer, all parameters, or names / globs), laid out branch
  by branch with known boundaries;
* :func:`exact_hessian` — the dense Hessian of a loss w.r.t. that subset,
  forward-over-reverse with :mod:`torch.func` (``jvp`` of ``grad``, i.e.
  ``jacfwd(jacrev)``, chunked), everything else held fixed;
* :func:`block_norms`, :func:`block_diagonality`, :func:`scale_free` — the
  M×M Frobenius block norms, the share of squared mass in diagonal blocks,
  and the norms divided by sqrt(‖H_kk‖·‖H_ll‖);
* :func:`estimate_bytes` / :func:`check_budget` — refuse, in one line,
  anything that would exceed a memory budget.

The eq. 12–14 factorisation and the structured (per-branch) exact method are
in :mod:`branchspec.hessian.factors`; the random-probe estimator for subsets
too large for a dense Hessian in :mod:`branchspec.hessian.probes`.

Hessians are taken with the model in eval mode (BatchNorm uses its running
statistics, so the loss is a sum of per-sample terms) and the loop engine.

Example:
    >>> import torch, torch.nn as nn
    >>> from branchspec import Branched
    >>> m = Branched(lambda: nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), 2, seed=0)
    >>> sub = select_params(m, "first-layer")
    >>> sub.names, sub.num_params, sub.boundaries
    (('0.weight', '0.bias'), 18, (0, 9, 18))
    >>> x, y = torch.randn(5, 2), torch.randn(5, 1)
    >>> H = exact_hessian(m, sub, x, y, lambda f, t: 0.5 * ((f - t) ** 2).sum())
    >>> H.shape, bool(torch.allclose(H, H.T, atol=1e-5))
    (torch.Size([18, 18]), True)
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from branchspec.branched import Branched, as_branched
from branchspec.errors import BranchspecError

GiB = 1024**3
DEFAULT_BUDGET_BYTES = 2 * GiB  # refuse exact Hessians needing more than this
SELECTORS = ("first-layer", "last-layer", "all")
LossFn = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------- subsets
@dataclass(frozen=True)
class ParamSubset:
    """The same parameters taken from every branch, laid out branch by branch.

    Row/column ``boundaries[k]:boundaries[k+1]`` of a Hessian over this subset
    belongs to branch k; inside a branch the parameters follow ``names``
    (each flattened row-major).
    """

    selector: str  # what the user asked for, e.g. "first-layer"
    names: tuple[str, ...]  # names inside one branch, e.g. ("conv1.weight",)
    shapes: tuple[tuple[int, ...], ...]  # shape of each named parameter
    num_branches: int  # M

    def __post_init__(self) -> None:
        if not self.names:
            raise BranchspecError(f"parameter subset {self.selector!r} is empty")
        if len(self.shapes) != len(self.names):
            raise ValueError("names and shapes differ in length")
        if self.num_branches < 1:
            raise ValueError("num_branches must be >= 1")

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(torch.Size(s).numel()) for s in self.shapes)

    @property
    def per_branch(self) -> int:
        """|w_k|: scalars taken from one branch."""
        return sum(self.sizes)

    @property
    def num_params(self) -> int:
        """P = M·|w_k|: the Hessian is P×P."""
        return self.per_branch * self.num_branches

    @property
    def boundaries(self) -> tuple[int, ...]:
        """(M+1,) offsets: branch k owns rows boundaries[k]:boundaries[k+1]."""
        return tuple(k * self.per_branch for k in range(self.num_branches + 1))

    def full_names(self, k: int) -> list[str]:
        """Names of branch k's chosen parameters inside the Branched model."""
        return [f"branches.{k}.{n}" for n in self.names]

    def flat(self, model: Branched) -> Tensor:
        """Current values as one ``(P,)`` vector, branch-major."""
        params = dict(model.named_parameters())
        parts = [params[n].detach().reshape(-1) for k in range(self.num_branches) for n in self.full_names(k)]
        return torch.cat(parts)  # (P,)

    def unflatten(self, vec: Tensor, branches: Sequence[int] | None = None) -> dict[str, Tensor]:
        """``{full name: tensor}`` from a ``(P,)`` vector (or a ``(len(branches)·|w_k|,)`` one)."""
        ks = range(self.num_branches) if branches is None else branches
        out, i = {}, 0
        for k in ks:
            for n, shape, size in zip(self.full_names(k), self.shapes, self.sizes):
                out[n] = vec[i:i + size].reshape(shape)
                i += size
        return out

    def describe(self) -> str:
        """What the selector picked, in one line.

        Example:
            >>> ParamSubset("first-layer", ("0.weight", "0.bias"), ((3, 2), (3,)), 2).describe()
            'first-layer: 0.weight (3×2), 0.bias (3) of each of 2 branches = 18 parameters'
        """
        picked = ", ".join(f"{n} ({'×'.join(map(str, sh)) or 'scalar'})" for n, sh in zip(self.names, self.shapes))
        return f"{self.selector}: {picked} of each of {self.num_branches} branches = {self.num_params} parameters"

    def labels(self) -> list[str]:
        """One row label per branch/name block, for figures."""
        return [f"{k}:{n}" for k in range(self.num_branches) for n in self.names]


def _modules_with_params(branch: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in branch.named_modules() if any(True for _ in m.parameters(recurse=False))]


def select_params(model: nn.Module, selector: str = "first-layer") -> ParamSubset:
    """Choose the same parameters in every branch (Fig. 5: "first layer of all 16 branches").

    Args:
        model: a :class:`Branched` (or a module exposing one as ``.branched``).
        selector: ``"first-layer"`` — the parameters of the first module (in
            registration order) that owns parameters in a branch, e.g. the
            stem conv; ``"last-layer"`` — of the last such module;
            ``"all"`` — every branch parameter; otherwise comma-separated
            names or :mod:`fnmatch` globs of names inside a branch
            (``"conv1.weight"``, ``"layer1.*.bn*.weight"``).

    The result names what it picked: ``subset.names`` and the one-line
    ``subset.describe()`` (also stored by :func:`branchspec.hessian.analyze`
    and printed by ``branchspec hessian``).

    Example:
        >>> import torch.nn as nn
        >>> m = Branched(lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), 4)
        >>> select_params(m, "last-layer").names, select_params(m, "0.*").per_branch
        (('2.weight', '2.bias'), 9)
        >>> select_params(m, "last-layer").describe()
        'last-layer: 2.weight (1×3), 2.bias (1) of each of 4 branches = 16 parameters'
    """
    model = as_branched(model)
    text = (selector or "").strip()
    branch = model.branches[0]
    shapes = {n: tuple(p.shape) for n, p in branch.named_parameters()}
    if not shapes:
        raise BranchspecError("the branches have no parameters")
    if text in ("first-layer", "last-layer"):
        mods = _modules_with_params(branch)
        prefix, mod = mods[0] if text == "first-layer" else mods[-1]
        names = [f"{prefix}.{n}" if prefix else n for n, _ in mod.named_parameters(recurse=False)]
    elif text == "all":
        names = list(shapes)
    else:
        patterns = [p.strip() for p in text.split(",") if p.strip()]
        if not patterns:
            raise BranchspecError(f"empty parameter selector {selector!r}; use one of {', '.join(SELECTORS)} or names")
        names = []
        for pat in patterns:
            hits = [n for n in shapes if fnmatch.fnmatchcase(n, pat)]
            if not hits:
                some = ", ".join(list(shapes)[:6])
                raise BranchspecError(
                    f"parameter selector {pat!r} matches no branch parameter "
                    f"(use {', '.join(SELECTORS)} or names such as {some})")
            names += [n for n in hits if n not in names]
        names = [n for n in shapes if n in names]  # registration order
    return ParamSubset(text, tuple(names), tuple(shapes[n] for n in names), model.num_branches)


# --------------------------------------------------------------------------- memory budget
def estimate_bytes(subset: ParamSubset, num_outputs: int = 0, itemsize: int = 4, method: str = "direct") -> int:
    """Bytes of the matrices an exact Hessian over ``subset`` holds at once.

    ``direct``: H and the identity of tangents, 2·P² values.
    ``blockwise`` (:mod:`branchspec.hessian.factors`): H (P²), the distributive
    and collaborative factors (2·NC·P, NC = batch × output size), the output
    Hessian d²L/df² ((NC)²) and one within-branch block pair (2·|w_k|²).
    Transient activations are bounded by the vmap chunk size and not counted.
    """
    p, pk, nc = subset.num_params, subset.per_branch, int(num_outputs)
    if method == "direct":
        n = 2 * p * p
    elif method == "blockwise":
        n = p * p + 2 * nc * p + nc * nc + 2 * pk * pk
    else:
        raise ValueError(f"unknown method {method!r}")
    return int(n * itemsize)


def check_budget(needed: int, budget_bytes: float, what: str, hint: str = "") -> None:
    """Raise a one-line :class:`BranchspecError` when ``needed`` > ``budget_bytes``."""
    if needed > budget_bytes:
        raise BranchspecError(
            f"{what} needs about {needed / GiB:.3g} GiB, over the memory budget of "
            f"{budget_bytes / GiB:.3g} GiB{'; ' + hint if hint else ''}")


# --------------------------------------------------------------------------- the loss as a function of the subset
@contextlib.contextmanager
def analysis_mode(model: Branched) -> Iterator[Branched]:
    """Eval mode and the loop engine inside the block (restored afterwards)."""
    engine, training = model.engine, model.training
    model.engine = "loop"
    model.eval()
    try:
        yield model
    finally:
        model.engine = engine
        model.train(training)


def subset_loss(model: Branched, subset: ParamSubset, x: Tensor, y: Tensor, loss_fn: LossFn, on: str = "f",
                args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Callable[[Tensor], Tensor]:
    """θ_S ↦ L: the loss as a function of the flat subset vector, other parameters fixed.

    ``on="f"``: ``loss_fn(f(x), y)`` with f = R + Σ_k v_k (eq. 1), the
    setting of §5. ``on="branches"``: ``loss_fn(v, y)`` with v the ``(M, B, ...)``
    branch outputs, e.g. a sum of per-branch losses Σ_k ℓ(v_k). ``args`` /
    ``kwargs``: extra model inputs (e.g. a conditioning vector), passed whole.
    Call it inside :func:`analysis_mode`.
    """
    if on not in ("f", "branches"):
        raise ValueError(f"on must be 'f' or 'branches', got {on!r}")
    kwargs = kwargs or {}

    def loss_of(theta: Tensor) -> Tensor:
        params = subset.unflatten(theta)
        if on == "f":
            f = functional_call(model, params, (x, *args), kwargs)
            return loss_fn(f, y)
        _, v = functional_call(model, params, (x, *args), {**kwargs, "return_branches": True})  # (M, B, ...)
        return loss_fn(v, y)

    return loss_of


def hvp_fn(loss_of: Callable[[Tensor], Tensor], theta: Tensor) -> Callable[[Tensor], Tensor]:
    """t ↦ H·t by forward-over-reverse (a ``jvp`` of ``grad``)."""
    g = grad(loss_of)

    def hvp(t: Tensor) -> Tensor:
        out: Tensor = jvp(g, (theta,), (t,))[1]
        return out

    return hvp


def dense_hessian(loss_of: Callable[[Tensor], Tensor], theta: Tensor, chunk_size: int | None = 32) -> Tensor:
    """The ``(P, P)`` Hessian of ``loss_of`` at ``theta``: ``vmap`` of :func:`hvp_fn` over the identity's columns.

    Example:
        >>> dense_hessian(lambda t: (t ** 3).sum(), torch.tensor([1., 2.])).tolist()
        [[6.0, 0.0], [0.0, 12.0]]
    """
    hvp = hvp_fn(loss_of, theta)
    eye = torch.eye(theta.numel(), dtype=theta.dtype, device=theta.device)
    return vmap(hvp, chunk_size=chunk_size)(eye)  # (P, P), row i = H e_i


def exact_hessian(model: nn.Module, subset: ParamSubset, x: Tensor, y: Tensor, loss_fn: LossFn, *,
                  on: str = "f", args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                  chunk_size: int | None = 32,
                  budget_bytes: float = DEFAULT_BUDGET_BYTES) -> Tensor:
    """The dense ``(P, P)`` Hessian of the loss w.r.t. ``subset`` (§5.2), rows branch by branch.

    Forward-over-reverse: ``vmap`` over the columns of the identity of
    ``jvp(grad(loss))`` — :func:`torch.func.hessian` (``jacfwd(jacrev)``)
    with the P tangents taken ``chunk_size`` at a time. Every parameter not
    in ``subset`` is held at its current value. ``args`` / ``kwargs``: extra
    model inputs (whole batch, e.g. ``args=(cond,)``). Refuses (one line) when
    :func:`estimate_bytes` exceeds ``budget_bytes``.

    Example:
        >>> import torch.nn as nn
        >>> m = Branched(lambda: nn.Linear(1, 1), 2, seed=0)
        >>> H = exact_hessian(m, select_params(m, "all"), torch.ones(3, 1), torch.zeros(3, 1),
        ...                   lambda f, t: 0.5 * ((f - t) ** 2).sum())
        >>> H[0, 0].item(), H[0, 2].item()   # Σ_j x_j², shared across branches (eq. 14)
        (3.0, 3.0)
    """
    model = as_branched(model)
    itemsize = next(model.parameters()).element_size()
    check_budget(estimate_bytes(subset, itemsize=itemsize), budget_bytes,
                 f"the exact Hessian of {subset.num_params} parameters ({subset.selector})",
                 "choose a smaller parameter subset or estimate block norms with probes")
    with torch.no_grad(), analysis_mode(model):
        theta = subset.flat(model)
        return dense_hessian(subset_loss(model, subset, x, y, loss_fn, on, args, kwargs), theta, chunk_size)


# --------------------------------------------------------------------------- block structure
def _blocks(boundaries: Sequence[int]) -> list[slice]:
    return [slice(a, b) for a, b in zip(boundaries[:-1], boundaries[1:])]


def block_norms(H: Tensor, boundaries: Sequence[int]) -> Tensor:
    """``(M, M)`` Frobenius norms ‖H_kl‖_F of the branch blocks.

    Example:
        >>> block_norms(torch.eye(4), (0, 2, 4)).tolist()
        [[1.4142135381698608, 0.0], [0.0, 1.4142135381698608]]
    """
    bl = _blocks(boundaries)
    out = torch.zeros(len(bl), len(bl), dtype=H.dtype, device=H.device)
    for k, rk in enumerate(bl):
        for l, rl in enumerate(bl):
            out[k, l] = H[rk, rl].norm()
    return out  # (M, M)


def block_diagonality(norms: Tensor) -> float:
    """Share of squared Frobenius mass inside the diagonal blocks, Σ_k‖H_kk‖² / ‖H‖².

    1.0 = perfectly block diagonal by branch; for a dense H with equal-size
    blocks of similar magnitude it is about 1/M. An all-zero H gives 1.0.

    Example:
        >>> block_diagonality(torch.tensor([[3., 0.], [0., 4.]])), block_diagonality(torch.ones(2, 2))
        (1.0, 0.5)
    """
    sq = norms.double() ** 2
    total = sq.sum().item()
    return 1.0 if total == 0 else float(sq.diagonal().sum().item() / total)


def scale_free(norms: Tensor) -> Tensor:
    """Block (k, l) divided by sqrt(‖H_kk‖·‖H_ll‖); 0 where a diagonal block is 0.

    Removes the scale of each branch, so a loud branch does not dominate.
    Its diagonal is 1 (or 0 for a branch with an all-zero block).
    """
    d = norms.diagonal()  # (M,)
    denom = (d[:, None] * d[None, :]).sqrt()  # (M, M)
    return torch.where(denom > 0, norms / denom.clamp_min(torch.finfo(norms.dtype).tiny), torch.zeros_like(norms))


def block_summary(H: Tensor, boundaries: Sequence[int]) -> dict[str, Any]:
    """JSON-ready block structure of H: norms, diagonality (plain and scale-free), symmetry."""
    norms = block_norms(H, boundaries)
    sf = scale_free(norms)
    scale = H.abs().max().item()
    return {
        "block_norms": norms.tolist(),
        "block_diagonality": block_diagonality(norms),
        "scale_free_block_norms": sf.tolist(),
        "scale_free_block_diagonality": block_diagonality(sf),
        "frobenius_norm": H.norm().item(),
        "max_abs_entry": scale,
        "symmetry_error": (H - H.T).abs().max().item() / scale if scale > 0 else 0.0,
    }
