"""Specialisation metrics (paper §4.1, §5.1) as pure tensor functions.

Everything here takes branch outputs shaped ``(M, N, ...)`` — branch axis
first, as returned by :meth:`branchspec.Branched.branch_outputs` — or the
response matrix F derived from them, and returns tensors. No model
attributes are read: the only door between model and analysis is the
``Branched`` API.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

if TYPE_CHECKING:  # for annotations only: metrics needs no model at run time
    from branchspec.branched import Branched


REDUCTIONS = ("auto", "identity", "norm", "sum", "mean", "flatten")


def response_matrix(outputs: Tensor, reduction: str = "auto") -> Tensor:
    """The response matrix F of §4.1: F[i, j] = response of branch i on sample j.

    Args:
        outputs: ``(M, N, ...)`` branch outputs v_i(x_j).
        reduction: how a vector / image output becomes F's entries:

            * ``"identity"`` — scalar outputs only: F[i, j] = v_i(x_j) exactly
              as the paper (``(M, N)`` or ``(M, N, 1)`` inputs);
            * ``"norm"`` — F[i, j] = ‖v_i(x_j)‖₂ over the trailing dims;
            * ``"sum"`` / ``"mean"`` — signed sum / mean over trailing dims;
            * ``"flatten"`` — the full response: F is ``(M, N·D)``, each
              sample's D output values laid side by side, so F·Fᵀ sums the
              inner products ⟨v_i(x_j), v_k(x_j)⟩ over samples;
            * ``"auto"`` — ``"identity"`` for scalar outputs, else ``"flatten"``.

    Returns:
        F, ``(M, N)`` (or ``(M, N·D)`` for ``"flatten"``).

    Example:
        >>> response_matrix(torch.tensor([[1., 2.], [0., 0.]])).tolist()
        [[1.0, 2.0], [0.0, 0.0]]
    """
    if outputs.dim() < 2:
        raise ValueError(f"outputs must be (M, N, ...), got shape {tuple(outputs.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    m, n = outputs.shape[:2]
    flat = outputs.reshape(m, n, -1)  # (M, N, D)
    scalar = flat.shape[2] == 1
    if reduction == "auto":
        reduction = "identity" if scalar else "flatten"
    if reduction == "identity":
        if not scalar:
            raise ValueError("reduction='identity' needs scalar branch outputs; use 'norm' or 'flatten'")
        return flat[..., 0]
    if reduction == "norm":
        norms: Tensor = flat.norm(dim=2)  # (M, N)
        return norms
    if reduction == "sum":
        return flat.sum(dim=2)
    if reduction == "mean":
        return flat.mean(dim=2)
    return flat.reshape(m, -1)  # (M, N·D)


def covariance(F: Tensor) -> Tensor:
    """Cov = F·Fᵀ exactly as §4.1 defines it (uncentred; Fig. 3 right, Fig. 5 panel 2).

    Example:
        >>> covariance(torch.tensor([[1., 0.], [0., 2.]])).tolist()
        [[1.0, 0.0], [0.0, 4.0]]
    """
    return F @ F.T  # (M, M)


def correlation(F: Tensor, eps: float = 1e-12) -> Tensor:
    """Normalised covariance: Cov_ik / sqrt(Cov_ii · Cov_kk), in [−1, 1].

    A silent branch (zero response) has zero correlation with everything,
    and 0 on its own diagonal entry.
    """
    return normalised_covariance(covariance(F), eps)


def normalised_covariance(cov: Tensor, eps: float = 1e-12) -> Tensor:
    """Cov_ik / sqrt(Cov_ii · Cov_kk) of a given ``(M, M)`` covariance (0 where a diagonal entry is 0)."""
    d = cov.diagonal().clamp_min(0).sqrt()  # (M,)
    denom = d[:, None] * d[None, :]
    return torch.where(denom > eps, cov / denom.clamp_min(eps), torch.zeros_like(cov))


def mean_abs_offdiag(C: Tensor) -> float:
    """Mean |C_ik| over k ≠ i — a one-number summary of a correlation matrix."""
    m = C.shape[0]
    if m < 2:
        return 0.0
    mask = ~torch.eye(m, dtype=torch.bool, device=C.device)
    return float(C.abs()[mask].mean().item())


def branch_norms(F: Tensor) -> Tensor:
    """‖F_i‖₂, the norm of each branch's response over all samples, ``(M,)``."""
    norms: Tensor = F.reshape(F.shape[0], -1).norm(dim=1)  # (M,)
    return norms


def active_mask(F: Tensor, fraction: float = 0.1) -> Tensor:
    """Active branches (§4.1, Fig. 4): ‖F_i‖ ≥ fraction · max_k ‖F_k‖.

    Silent branches are the complement. If every branch is zero, none is active.

    Example:
        >>> active_mask(torch.tensor([[1., 1.], [0.05, 0.], [0.5, 0.]])).tolist()
        [True, False, True]
    """
    return active_by_norm(branch_norms(F), fraction)


def active_by_norm(norms: Tensor, fraction: float = 0.1) -> Tensor:
    """:func:`active_mask` from the branch norms ‖F_i‖ ``(M,)`` themselves."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    top = norms.max()
    if top <= 0:
        return torch.zeros_like(norms, dtype=torch.bool)
    return norms >= fraction * top


def branch_confidence(V: Tensor, labels: Tensor) -> Tensor:
    """Per-branch confidence on labelled samples, ``(M, N)`` (§6, Figs. 7, 8, 16).

    The paper gives no formula; branchspec defines the confidence of branch
    k on a sample of class y as its contribution to the true-class logit
    minus its mean contribution to the other classes,
    conf_k(x) = v_k(x)[y] − 1/(C−1) · Σ_{c≠y} v_k(x)[c]. Positive: branch k
    pushes towards the right class; ≈ 0: silent or indifferent. Since
    f = Σ_k v_k, the confidences add up to the margin of the unclamped sum.

    Example:
        >>> V = torch.tensor([[[1., 0.], [0., 1.]], [[0., 0.], [0., 0.]]])  # (M=2, N=2, C=2)
        >>> branch_confidence(V, torch.tensor([0, 1])).tolist()
        [[1.0, 1.0], [0.0, 0.0]]
    """
    m, n, c = V.shape
    true = V.gather(2, labels.view(1, n, 1).expand(m, n, 1))[..., 0]  # (M, N)
    others = (V.sum(2) - true) / (c - 1)  # (M, N)
    return true - others


@dataclass(frozen=True)
class ActivityCounts:
    """Active / silent counts and masks of one response matrix."""

    active: int
    silent: int
    mask: Tensor  # (M,) bool, True = active


def activity(F: Tensor, fraction: float = 0.1) -> ActivityCounts:
    """Counts of active and silent branches (Fig. 4 right, Fig. 5 panel 1)."""
    mask = active_mask(F, fraction)
    a = int(mask.sum())
    return ActivityCounts(active=a, silent=mask.numel() - a, mask=mask)


class StreamingCovariance:
    """Cov = F·Fᵀ (§4.1) accumulated batch by batch, never holding the ``(M, N·D)`` F of all samples.

    F is the column blocks of the batches side by side, F = [F_1 … F_b], so
    F·Fᵀ = Σ_b F_b·F_bᵀ; each :meth:`update` adds one batch's ``(M, M)``
    product (in float64). ``reduction`` as in :func:`response_matrix`.

    Example:
        >>> acc = StreamingCovariance()
        >>> V = torch.randn(3, 10, 4)                   # (M, N, D)
        >>> acc.update(V[:, :6]); acc.update(V[:, 6:])
        >>> bool(torch.allclose(acc.covariance, covariance(response_matrix(V)).double()))
        True
    """

    def __init__(self, reduction: str = "auto") -> None:
        self.reduction = reduction
        self.cov: Tensor | None = None
        self.samples = 0

    def update(self, outputs: Tensor) -> None:
        """Add a batch of branch outputs ``(M, B, ...)``."""
        F = response_matrix(outputs.detach(), self.reduction).double()  # (M, B·D)
        part = F @ F.T  # (M, M)
        self.cov = part if self.cov is None else self.cov + part
        self.samples += outputs.shape[1]

    @property
    def covariance(self) -> Tensor:
        """Σ_b F_b·F_bᵀ, ``(M, M)``."""
        if self.cov is None:
            raise ValueError("no batch was added")
        return self.cov

    def norms(self) -> Tensor:
        """‖F_i‖ of every branch over all samples, ``(M,)``."""
        return self.covariance.diagonal().clamp_min(0).sqrt()

    def correlation(self) -> Tensor:
        """:func:`correlation` of the whole F."""
        return normalised_covariance(self.covariance)

    def activity(self, fraction: float = 0.1) -> ActivityCounts:
        """:func:`activity` of the whole F."""
        mask = active_by_norm(self.norms(), fraction)
        a = int(mask.sum())
        return ActivityCounts(active=a, silent=mask.numel() - a, mask=mask)


# --------------------------------------------------------------------------
# Gradient factorisation (eq. 5–6, 10–11)


@dataclass(frozen=True)
class GradientFactors:
    """Per-sample factors of ∂L/∂w_k (eq. 10–11).

    ``distributive[k][name]``: ∂v_k(x_j)/∂w_k, shaped ``(N, C, *param_shape)``
    with C the flattened output size. ``collaborative``: dL/df(x_j),
    ``(N, C)`` — one vector shared by every branch. Their contraction over C,
    summed over samples, is autograd's gradient of the batch loss.
    """

    distributive: list[dict[str, Tensor]]
    collaborative: Tensor

    def per_sample_gradient(self, k: int, name: str) -> Tensor:
        """(∂v_k/∂w)ᵀ · dL/df for each sample, ``(N, *param_shape)``."""
        d = self.distributive[k][name]  # (N, C, *P)
        return torch.einsum("nc...,nc->n...", d, self.collaborative)

    def gradient(self, k: int, name: str) -> Tensor:
        """Σ_j (∂v_k(x_j)/∂w)ᵀ · dL/df(x_j): the batch gradient via eq. 10."""
        return self.per_sample_gradient(k, name).sum(0)


def per_sample_dims(args: tuple[Any, ...], kwargs: dict[str, Any], n: int
                    ) -> tuple[tuple[int | None, ...], dict[str, int | None]]:
    """Which extra inputs carry a sample axis: 0 for a tensor whose first dim is ``n``, else ``None``.

    The ``in_dims`` of :func:`torch.func.vmap` for ``(args, kwargs)``: a
    conditioning tensor ``(N, ...)`` is split per sample, anything else
    (a scalar, a shared embedding, a string) is passed whole.

    Example:
        >>> per_sample_dims((torch.zeros(6), torch.zeros(3), "a"), {"c": torch.zeros(6, 2)}, 6)
        ((0, None, None), {'c': 0})
    """
    def dim(a: Any) -> int | None:
        return 0 if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n else None

    return tuple(dim(a) for a in args), {k: dim(v) for k, v in kwargs.items()}


def take_samples(args: tuple[Any, ...], kwargs: dict[str, Any], n: int, index: slice
                 ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` with every per-sample input (see :func:`per_sample_dims`) indexed by ``index``."""
    adims, kdims = per_sample_dims(args, kwargs, n)
    return (tuple(a[index] if d == 0 else a for a, d in zip(args, adims)),
            {k: v[index] if kdims[k] == 0 else v for k, v in kwargs.items()})


def gradient_factors(
    model: Branched,
    x: Tensor,
    y: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    param_names: Sequence[str] | None = None,
    branches: Sequence[int] | None = None,
    *,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> GradientFactors:
    """Split the gradient of every chosen branch parameter into its factors.

    Eq. 10: ∇_{θ_k} L(x) = (∇_{θ_k} v_k(x))ᵀ · dL/df(x) — the distributive
    part (a Jacobian of branch k alone) times the collaborative part (the
    loss gradient at the summed output, the same for every branch). For
    L = ½‖f − y‖² the collaborative part is f − y (eq. 2, whose sign the
    paper writes as y − f); for cross-entropy against a target p it is
    softmax(f) − p (eq. 3, likewise).

    Args:
        model: a :class:`~branchspec.Branched` model.
        x: ``(N, ...)`` inputs; y: targets for ``loss_fn``.
        loss_fn: ``loss_fn(f, y)`` returning the scalar loss, a *sum* over
            samples (per-sample factors then add up to the batch gradient).
        param_names: names inside one branch (``"0.weight"``); default all.
        branches: which k; default all.
        args, kwargs: extra branch inputs, as for ``model.forward``
            (``model(x, *args, **kwargs)``). A tensor whose first dim is N
            (e.g. a per-sample condition ``(N,)`` of a FiLM branch) is split
            per sample like x; anything else is passed whole
            (:func:`per_sample_dims`).

    Example:
        >>> import torch.nn as nn
        >>> from branchspec import Branched
        >>> m = Branched(lambda: nn.Linear(1, 1), 2, seed=0)
        >>> x, y = torch.randn(4, 1), torch.randn(4, 1)
        >>> gf = gradient_factors(m, x, y, lambda f, t: 0.5 * ((f - t) ** 2).sum())
        >>> gf.collaborative.shape, gf.distributive[0]["weight"].shape
        (torch.Size([4, 1]), torch.Size([4, 1, 1, 1]))
    """
    if branches is None:
        branches = range(model.num_branches)
    args, kwargs = tuple(args), dict(kwargs or {})
    f = model(x, *args, **kwargs).detach().requires_grad_(True)
    (collab,) = torch.autograd.grad(loss_fn(f, y), f)
    collab = collab.reshape(f.shape[0], -1)  # (N, C)
    per_branch_in = model.branch_inputs(x)  # (M, N, ...) or None
    adims, kdims = per_sample_dims(args, kwargs, x.shape[0])
    dist: list[dict[str, Tensor]] = []
    for k in branches:
        branch = model.branches[k]
        params = dict(branch.named_parameters())
        names = list(param_names) if param_names is not None else list(params)
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(f"no parameter(s) {missing} in a branch; have {list(params)}")
        gain = model.branch_gain[k]
        fixed = {n: p.detach() for n, p in params.items() if n not in names}
        buffers = dict(branch.named_buffers())
        xin = x if per_branch_in is None else per_branch_in[k]

        def v_single(chosen: dict[str, Tensor], xj: Tensor, aj: tuple[Any, ...], kj: dict[str, Any],
                     _fixed: dict[str, Tensor] = fixed, _buf: dict[str, Tensor] = buffers,
                     _branch: nn.Module = branch, _gain: Tensor = gain) -> Tensor:
            aj = tuple(a[None] if d == 0 else a for a, d in zip(aj, adims))  # one sample of each split input
            kj = {n: v[None] if kdims[n] == 0 else v for n, v in kj.items()}
            out: Tensor = functional_call(_branch, ({**_fixed, **chosen}, _buf), (xj[None], *aj), kj)
            return (_gain * out).reshape(-1)  # (C,)

        chosen = {n: params[n].detach() for n in names}
        jac = vmap(jacrev(v_single), in_dims=(None, 0, adims, kdims))(chosen, xin, args, kwargs)  # {name: (N, C, *P)}
        dist.append(jac)
    return GradientFactors(distributive=dist, collaborative=collab)
