"""One Hessian analysis of a checkpoint, saved as JSON + NPZ (used by the CLI and the demo).

:func:`analyze` picks the exact method (direct forward-over-reverse for small
subsets, the eq. 13–14 blockwise assembly otherwise), checks it (symmetry,
eq. 14 products, a few Hessian columns against direct Hessian-vector
products), adds probe estimates on request, and falls back to probes alone
when the exact Hessian is over the memory budget. :func:`save_results`
writes ``hessian.json`` / ``hessian.npz``; figures are drawn from those files
by :mod:`branchspec.figures.hessian`.

Example:
    >>> import torch
    >>> from branchspec.toy import toy_model
    >>> from branchspec.hessian.data import HessianData, l2_sum
    >>> x, y = torch.tensor([[-1.0], [0.0], [0.0], [1.0]]), torch.tensor([[1.0], [0.5], [0.5], [1.0]])  # Toy1
    >>> res, H = analyze(toy_model(3, seed=0), HessianData(x, y, l2_sum, "l2", "toy1"))
    >>> res["num_params"], H.shape
    (6, torch.Size([6, 6]))
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap

from branchspec import budget
from branchspec.branched import as_branched
from branchspec.errors import BranchspecError, ConfigError
from branchspec.io import atomic_write_json, atomic_write_npz
from branchspec.hessian.exact import (
    DEFAULT_BUDGET_BYTES,
    ParamSubset,
    analysis_mode,
    block_summary,
    check_budget,
    estimate_bytes,
    exact_hessian,
    hvp_fn,
    select_params,
    subset_loss,
)
from branchspec.hessian.data import HessianData
from branchspec.hessian.factors import blockwise_hessian, eq14_report, hessian_factors
from branchspec.hessian.probes import exact_stderr, probe_block_norms

METHODS = ("auto", "direct", "blockwise")  # exact method: chosen by size, forward-over-reverse, eq. 13-14


@dataclass(frozen=True)
class HessianConfig:
    """One Hessian analysis, written as ``"config"`` into ``hessian.json``."""

    params: str = "first-layer"  # parameter subset of every branch (see select_params)
    batch: int = 128  # samples the loss is taken on
    method: str = "auto"  # exact method: one of METHODS
    probes: int = 0  # K random probes per block; 0 = none
    max_memory_gb: float = 2.0  # memory budget of the exact Hessian (capped by branchspec.budget's)
    seed: int = 0  # probes and column checks
    zero_tol: float = 1e-6  # "zero" distributive factor, relative to the largest

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConfigError("batch", f"must be >= 1, got {self.batch}")
        if self.method not in METHODS:
            raise ConfigError("method", f"unknown Hessian method {self.method!r} ({', '.join(METHODS)})")
        if self.probes < 0:
            raise ConfigError("probes", f"must be >= 0, got {self.probes}")
        if not self.max_memory_gb > 0:
            raise ConfigError("max_memory_gb", f"must be > 0, got {self.max_memory_gb}")
        if not 0 <= self.zero_tol < 1:
            raise ConfigError("zero_tol", f"must lie in [0, 1), got {self.zero_tol}")

    @property
    def budget_bytes(self) -> int:
        """``max_memory_gb`` GiB, never more than the one memory budget (:func:`branchspec.budget.budget_bytes`)."""
        return int(min(self.max_memory_gb * 1024**3, budget.budget_bytes()))

    def run(self, model: nn.Module, data: HessianData) -> tuple[dict[str, Any], Tensor | None]:
        """:func:`analyze` with this configuration; the config is stored in the result."""
        res, H = analyze(model, data, self.params, method=self.method, probes=self.probes,
                         budget_bytes=self.budget_bytes, seed=self.seed, zero_tol=self.zero_tol)
        res["config"] = asdict(self)
        return res, H


DIRECT_MAX_PARAMS = 32  # "auto" uses the direct method up to this many parameters (blockwise is faster beyond)


def column_check(model: nn.Module, subset: ParamSubset, data: HessianData, H: Tensor, columns: int = 3,
                 seed: int = 0) -> float:
    """Max relative error of ``columns`` random columns of H against direct Hessian-vector products."""
    model = as_branched(model)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(subset.num_params, generator=gen)[:columns]
    with torch.no_grad(), analysis_mode(model):
        theta = subset.flat(model)
        hvp = hvp_fn(subset_loss(model, subset, data.x, data.y, data.loss_fn), theta)
        eye = torch.zeros(len(idx), subset.num_params, dtype=theta.dtype, device=theta.device)
        eye[torch.arange(len(idx)), idx] = 1
        cols = vmap(hvp)(eye)  # (columns, P)
    scale = H.abs().max().item() or 1.0
    return (cols - H[idx]).abs().max().item() / scale


def analyze(model: nn.Module, data: HessianData, params: str = "first-layer", *, method: str = "auto",
            probes: int = 0, budget_bytes: float = DEFAULT_BUDGET_BYTES, seed: int = 0,
            zero_tol: float = 1e-6) -> tuple[dict[str, Any], Tensor | None]:
    """The Hessian block structure of ``model`` on ``data``: ``(result dict, H or None)``.

    ``method``: ``"direct"`` (:func:`~branchspec.hessian.exact_hessian`),
    ``"blockwise"`` (:func:`~branchspec.hessian.factors.blockwise_hessian`) or
    ``"auto"`` (direct up to :data:`DIRECT_MAX_PARAMS` parameters).
    ``probes`` > 0 adds the random-probe estimate (and, with H known, its
    error against the exact block norms). When the exact Hessian is over
    ``budget_bytes``: with probes, the result holds the probe estimate only
    (H is None); without, a one-line :class:`BranchspecError`.
    """
    branched = as_branched(model)
    subset = select_params(branched, params)
    itemsize = next(branched.parameters()).element_size()
    with torch.no_grad(), analysis_mode(branched):
        nc = branched(data.x).numel()
    if method == "auto":
        method = "direct" if subset.num_params <= DIRECT_MAX_PARAMS else "blockwise"
    if method not in ("direct", "blockwise"):
        raise BranchspecError(f"unknown Hessian method {method!r} (direct, blockwise, auto)")
    need = estimate_bytes(subset, nc, itemsize, method)
    res = {
        "params": params, "picked": subset.describe(), "param_names": list(subset.names),
        "num_branches": subset.num_branches,
        "num_params": subset.num_params, "params_per_branch": subset.per_branch,
        "boundaries": list(subset.boundaries), "batch": int(data.x.shape[0]), "loss": data.loss, "data": data.data,
        "memory": {"estimated_bytes": need, "budget_bytes": int(budget_bytes), "method": method},
    }
    H = None
    try:
        check_budget(need, budget_bytes, f"the exact Hessian of {subset.num_params} parameters ({params})",
                     "use `probes` K for an estimate, a smaller `params` subset or `batch`, or raise `max_memory_gb`")
    except BranchspecError:
        if probes <= 0:
            raise
        res["method"] = "probes"
    else:
        t0 = time.perf_counter()
        if method == "direct":
            H = exact_hessian(branched, subset, data.x, data.y, data.loss_fn, budget_bytes=budget_bytes)
            factors = hessian_factors(branched, subset, data.x, data.y, data.loss_fn)
        else:
            H, factors = blockwise_hessian(branched, subset, data.x, data.y, data.loss_fn, budget_bytes=budget_bytes)
        res["seconds_exact"] = round(time.perf_counter() - t0, 3)
        res["method"] = method
        res.update(block_summary(H, subset.boundaries))
        res["eq14"] = eq14_report(H, factors, subset.boundaries, zero_tol)
        res["column_check_max_rel_error"] = column_check(branched, subset, data, H, seed=seed)
    if probes > 0:
        # K probes hold (K, M, M) float64 squares and (K, P) signs, probes and H·z: check before allocating
        # (against the budget, at least 64 MiB so that a budget set low to force the probe path admits them).
        m = subset.num_branches
        check_budget(probes * (8 * m * m + 3 * itemsize * subset.num_params + 8 * subset.per_branch),
                     max(budget_bytes, 64 * 2**20),
                     f"{probes} probes of {subset.num_params} parameters", "use fewer `probes` or raise `max_memory_gb`")
        t0 = time.perf_counter()
        est = probe_block_norms(branched, subset, data.x, data.y, data.loss_fn, probes=probes, seed=seed)
        pr = est.summary()
        pr["seconds"] = round(time.perf_counter() - t0, 3)
        if H is not None:
            exact_sq = torch.tensor(res["block_norms"], dtype=torch.float64) ** 2
            pr["abs_error_vs_exact"] = (est.squared - exact_sq).abs().tolist()
            pr["exact_stderr"] = exact_stderr(H, subset.boundaries, probes).tolist()
        res["probes"] = pr
        if H is None:
            for key in ("block_norms", "block_diagonality", "scale_free_block_norms"):
                res[key] = pr[key]
    return res, H


def save_results(out_dir: Path, result: dict[str, Any], H: Tensor | None, compare: dict[str, Any] | None = None,
                 H_compare: Tensor | None = None) -> tuple[Path, Path | None]:
    """Write ``hessian.json`` (result, with ``compare`` under its key) and ``hessian.npz`` (H, H_compare)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = dict(result)
    if compare is not None:
        doc["compare"] = compare
    jp = atomic_write_json(out_dir / "hessian.json", doc)
    arrays = {}
    if H is not None:
        arrays["H"] = H.detach().cpu().numpy()
        arrays["boundaries"] = np.asarray(result["boundaries"])
    if H_compare is not None:
        arrays["H_compare"] = H_compare.detach().cpu().numpy()
    npz = None
    if arrays:
        npz = atomic_write_npz(out_dir / "hessian.npz", arrays)
    return jp, npz
