"""Hessians of branched models and their block structure (§5.2, §8, eq. 12–14, Fig. 5 panels 3–4).

The package, bottom to top (each module imports only those above it in this list):

* :mod:`~branchspec.hessian.exact` — parameter subsets laid out branch by
  branch (:func:`select_params`), the dense exact Hessian
  (:func:`exact_hessian`, forward-over-reverse), memory budgets, and the
  M×M block norms / block diagonality of a Hessian;
* :mod:`~branchspec.hessian.factors` — the eq. 12–14 factorisation
  (distributive ∂v_k/∂w_k × collaborative d²L/df²), the structured blockwise
  exact Hessian built from it, and the eq. 14 check;
* :mod:`~branchspec.hessian.probes` — random-probe estimates of the block
  norms for subsets too large for a dense Hessian;
* :mod:`~branchspec.hessian.data` — a batch and its loss (:class:`HessianData`;
  the batch of each checkpoint kind is chosen by :mod:`branchspec.experiments.hessian_data`);
* :mod:`~branchspec.hessian.analysis` — one analysis of a checkpoint
  (method choice, checks, probes) saved as ``hessian.json`` + ``hessian.npz``.

Everything public is re-exported here, so ``from branchspec.hessian import
select_params, exact_hessian`` is the usual way in; modules inside the
package import each other directly (never this ``__init__``).

Example:
    >>> import torch, torch.nn as nn
    >>> from branchspec import Branched
    >>> m = Branched(lambda: nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), 2, seed=0)
    >>> sub = select_params(m, "first-layer")
    >>> H = exact_hessian(m, sub, torch.randn(5, 2), torch.randn(5, 1), l2_sum)
    >>> block_norms(H, sub.boundaries).shape   # (M, M) Frobenius norms of the blocks (Fig. 5)
    torch.Size([2, 2])
"""

from branchspec.hessian.analysis import DIRECT_MAX_PARAMS, HessianConfig, analyze, column_check, save_results
from branchspec.hessian.data import HessianData, l2_sum
from branchspec.hessian.exact import (
    DEFAULT_BUDGET_BYTES,
    SELECTORS,
    ParamSubset,
    analysis_mode,
    block_diagonality,
    block_norms,
    block_summary,
    check_budget,
    estimate_bytes,
    dense_hessian,
    exact_hessian,
    hvp_fn,
    scale_free,
    select_params,
    subset_loss,
)
from branchspec.hessian.factors import (
    HessianFactors,
    auto_chunk,
    blockwise_hessian,
    eq14_report,
    hessian_factors,
    within_branch_curvature,
)
from branchspec.hessian.probes import (
    ProbeEstimate,
    exact_stderr,
    probe_block_norms,
    probe_blocks,
    rademacher_variance,
)

__all__ = [
    "DEFAULT_BUDGET_BYTES", "DIRECT_MAX_PARAMS", "SELECTORS",
    "ParamSubset", "select_params", "estimate_bytes", "check_budget", "analysis_mode", "subset_loss", "hvp_fn",
    "dense_hessian", "exact_hessian", "block_norms", "block_diagonality", "scale_free", "block_summary",
    "HessianFactors", "hessian_factors", "auto_chunk", "within_branch_curvature", "blockwise_hessian", "eq14_report",
    "ProbeEstimate", "rademacher_variance", "exact_stderr", "probe_block_norms", "probe_blocks",
    "HessianData", "l2_sum",
    "HessianConfig", "column_check", "analyze", "save_results",
]
