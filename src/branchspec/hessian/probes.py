"""Block norms of a Hessian too large to form, from Hessian-vector products (§5.2).

Estimator (Hutchinson-style, per block). For a Rademacher vector z_l that is
±1 on the rows of branch l and 0 elsewhere, E[z_l z_lᵀ] = I on block l, so

    ‖H_kl‖_F² = E ‖H_kl z_l‖²,

and one Hessian-vector product H·z_l (forward-over-reverse, never forming
H) gives ‖H_kl z_l‖² for every k at once. With K probes per block the
estimate is the mean of K such values; its variance is Var/K with, for a
block A = H_kl and B = AᵀA (Hutchinson 1990; Avron & Toledo 2011),

    Var ‖A z‖² = 2 (‖B‖_F² − Σ_i B_ii²)  ≤ 2 ‖B‖_F² ≤ 2 ‖A‖_F⁴,

i.e. a relative standard error of at most sqrt(2/K) on ‖H_kl‖_F². The
reported ``stderr`` is the sample standard deviation over the K probes
divided by sqrt(K) (needs K ≥ 2). Cost: K·M Hessian-vector products, each
about three passes of the model; memory: a few copies of the subset vector.

Example:
    >>> import torch, torch.nn as nn
    >>> from branchspec import Branched
    >>> from branchspec.hessian import select_params
    >>> m = Branched(lambda: nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)), 3, seed=0)
    >>> est = probe_block_norms(m, select_params(m, "all"), torch.randn(8, 2), torch.randn(8, 1),
    ...                         lambda f, t: 0.5 * ((f - t) ** 2).sum(), probes=16, seed=0)
    >>> est.squared.shape, est.stderr.shape
    (torch.Size([3, 3]), torch.Size([3, 3]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap

from branchspec.branched import as_branched
from branchspec.hessian.exact import (
    LossFn,
    ParamSubset,
    analysis_mode,
    block_diagonality,
    hvp_fn,
    scale_free,
    subset_loss,
)


@dataclass(frozen=True)
class ProbeEstimate:
    """Probe estimates of ‖H_kl‖_F² with their standard errors, ``(M, M)`` each."""

    squared: Tensor  # mean over probes of ‖H_kl z_l‖²
    stderr: Tensor  # sample std over probes / sqrt(K)
    probes: int  # K

    @property
    def norms(self) -> Tensor:
        """Estimated ‖H_kl‖_F (square root of the clamped mean)."""
        return self.squared.clamp_min(0).sqrt()

    def summary(self) -> dict[str, Any]:
        """JSON-ready: norms, squared norms ± stderr, block diagonality (plain and scale-free)."""
        return {
            "probes": self.probes,
            "estimator": "||H_kl||_F^2 = E||H_kl z_l||^2, z_l Rademacher on block l; mean of K probes",
            "block_norms": self.norms.tolist(),
            "squared_block_norms": self.squared.tolist(),
            "squared_block_norms_stderr": self.stderr.tolist(),
            "block_diagonality": block_diagonality(self.norms),
            "scale_free_block_norms": scale_free(self.norms).tolist(),
        }


def rademacher_variance(A: Tensor) -> float:
    """Exact Var ‖A z‖² over Rademacher z: 2(‖AᵀA‖_F² − Σ_i (AᵀA)_ii²).

    Example:
        >>> rademacher_variance(torch.eye(3))   # ‖z‖² = 3 always
        0.0
    """
    B = A.T @ A
    return float(2 * (B.pow(2).sum() - B.diagonal().pow(2).sum()).item())


def exact_stderr(H: Tensor, boundaries: Sequence[int], probes: int) -> Tensor:
    """The true standard error sqrt(Var/K) of each block's estimate, from a known H, ``(M, M)``."""
    b = list(boundaries)
    m = len(b) - 1
    out = torch.zeros(m, m, dtype=torch.float64)
    for k in range(m):
        for l in range(m):
            out[k, l] = (rademacher_variance(H[b[k]:b[k + 1], b[l]:b[l + 1]].double()) / probes) ** 0.5
    return out


def probe_blocks(hvp: Callable[[Tensor], Tensor], theta: Tensor, boundaries: Sequence[int], *,
                 probes: int = 32, seed: int = 0, chunk_size: int | None = 8) -> ProbeEstimate:
    """The probe estimator of the module docstring for any ``hvp`` and block ``boundaries``.

    Blocks may differ in size. Cost: ``probes`` Hessian-vector products per block.
    """
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    b = list(boundaries)
    m = len(b) - 1
    gen = torch.Generator().manual_seed(seed)
    sq = torch.zeros(probes, m, m, dtype=torch.float64)  # (K, M_rows k, M_cols l)
    for l in range(m):
        signs = torch.randint(0, 2, (probes, b[l + 1] - b[l]), generator=gen).to(theta.dtype) * 2 - 1
        z = torch.zeros(probes, theta.numel(), dtype=theta.dtype, device=theta.device)  # (K, P)
        z[:, b[l]:b[l + 1]] = signs.to(theta.device)
        hz = vmap(hvp, chunk_size=chunk_size)(z)  # (K, P): H z_l
        for k in range(m):
            sq[:, k, l] = hz[:, b[k]:b[k + 1]].double().pow(2).sum(1).cpu()
    mean = sq.mean(0)
    se = sq.std(0, unbiased=True) / probes**0.5 if probes > 1 else torch.full_like(mean, float("nan"))
    return ProbeEstimate(mean, se, probes)


def probe_block_norms(model: nn.Module, subset: ParamSubset, x: Tensor, y: Tensor, loss_fn: LossFn, *,
                      probes: int = 32, seed: int = 0, on: str = "f", args: tuple[Any, ...] = (),
                      kwargs: dict[str, Any] | None = None, chunk_size: int | None = 8) -> ProbeEstimate:
    """Estimate the ``(M, M)`` block norms of the subset Hessian with K·M Hessian-vector products.

    Works for any subset size (e.g. ``"all"`` of a 16-branch classifier)
    since H is never formed. ``seed`` makes the probes reproducible.
    """
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    model = as_branched(model)
    with torch.no_grad(), analysis_mode(model):
        theta = subset.flat(model)
        hvp = hvp_fn(subset_loss(model, subset, x, y, loss_fn, on, args, kwargs), theta)
        return probe_blocks(hvp, theta, subset.boundaries, probes=probes, seed=seed, chunk_size=chunk_size)
