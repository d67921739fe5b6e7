"""branchspec: branch specialisation in branched networks (Brokman & Gilboa).

The main path: data → :class:`Branched` model → per-branch outputs (M, B, …)
→ :mod:`branchspec.metrics` / :mod:`branchspec.hessian` → figures → report.
Ordinary models (attention heads, experts, channel groups) enter the same
path through :mod:`branchspec.parts`.

The names below are the main public API; everything else is reached through
its module (``branchspec.metrics``, ``branchspec.hessian``, ``branchspec.parts``).

Example:
    >>> import torch, torch.nn as nn
    >>> import branchspec as bs
    >>> m = bs.Branched(lambda: nn.Linear(3, 1), 4, seed=0)
    >>> bs.activity(bs.response_matrix(m.branch_outputs(torch.randn(8, 3)))).active
    4
"""

from branchspec import hessian, metrics, parts
from branchspec.branched import Branched, ResidualSplit
from branchspec.hessian import (
    block_diagonality,
    block_norms,
    blockwise_hessian,
    exact_hessian,
    probe_block_norms,
    select_params,
)
from branchspec.metrics import (
    StreamingCovariance,
    activity,
    branch_confidence,
    branch_norms,
    correlation,
    covariance,
    gradient_factors,
    mean_abs_offdiag,
    response_matrix,
)
from branchspec.parts import (
    Tracker,
    block_structure,
    branches,
    contributions,
    experts,
    gradient_norms,
    groups,
    heads,
    kept,
    part_hessian,
    silenced,
)

__all__ = [
    # the branched model (eq. 1, eq. 15)
    "Branched", "ResidualSplit",
    # specialisation metrics (§4.1, §6)
    "response_matrix", "covariance", "correlation", "activity", "branch_norms", "mean_abs_offdiag",
    "branch_confidence", "StreamingCovariance", "gradient_factors",
    # Hessian block structure (§5.2, §8)
    "select_params", "exact_hessian", "blockwise_hessian", "probe_block_norms", "block_norms", "block_diagonality",
    # parts of unmodified models
    "heads", "experts", "groups", "branches", "contributions", "silenced", "kept", "gradient_norms",
    "part_hessian", "block_structure", "Tracker",
    # sub-packages
    "metrics", "hessian", "parts",
]
__version__ = "0.1.0"
