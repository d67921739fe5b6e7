"""Specialisation of the parts of unmodified models: heads, experts, channel groups, branches.

An ordinary layer whose output is a sum of parts, f = R + Σ_k v_k (eq. 1),
is analysed like a :class:`~branchspec.Branched` model without rewriting
it: a *part spec* names the layer and its kind, forward hooks split what it
computes into ``(M, B, ...)`` contributions, and parameter slices give each
part's gradient and Hessian block.

Example (per-head analysis of an attention layer in four lines):
    >>> import torch, torch.nn as nn
    >>> from branchspec import parts, metrics
    >>> mha = nn.MultiheadAttention(16, 4, batch_first=True); x = torch.randn(8, 6, 16)
    >>> c = parts.contributions(mha, parts.heads(mha), x, args=(x, x))
    >>> corr = metrics.correlation(c.response())          # (H, H), §4.1
    >>> corr.shape, c.residual_error < 1e-5
    (torch.Size([4, 4]), True)
"""

from branchspec.parts.attention import ConcatHeads, Heads, heads
from branchspec.parts.core import (
    Contributions,
    contributions,
    eval_mode,
    hooked,
    kept,
    ranking,
    scaled,
    silenced,
)
from branchspec.parts.curvature import (
    PartLayout,
    block_structure,
    gradient_norms,
    part_hessian,
    part_layout,
    part_loss,
    probe_part_blocks,
)
from branchspec.parts.experts import Experts, experts, softmax_weights
from branchspec.parts.groups import Branches, Groups, branches, groups
from branchspec.parts.spec import ParamSlice, PartSpec, Split
from branchspec.parts.tracker import Tracker, read_records

__all__ = [
    "PartSpec", "Split", "ParamSlice", "Heads", "ConcatHeads", "Experts", "Groups", "Branches",
    "heads", "experts", "groups", "branches", "softmax_weights",
    "Contributions", "contributions", "ranking", "silenced", "kept", "scaled", "hooked", "eval_mode",
    "PartLayout", "part_layout", "gradient_norms", "part_loss", "part_hessian", "probe_part_blocks",
    "block_structure", "Tracker", "read_records",
]
