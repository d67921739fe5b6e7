"""Figures 2–4 of the paper (§4.1), drawn from a toy folder's results.json and traces.npz only.

* ``{problem}_dynamics.png`` — each branch's output on each x during training, M = 2, two seeds (Fig. 2);
* ``{problem}_success_cov.png`` — success rate vs M and ten Cov = F·Fᵀ for M = 10 (Fig. 3);
* ``{problem}_activity.png`` — the responses of 20 branches and mean active / silent branches vs M (Fig. 4).

Example:
    >>> paths = draw_all("toy-out")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from branchspec.figures.common import new_figure, plt, save
from branchspec.toy.io import load_results

_XCOLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
_STYLES = ["-", "--", ":", "-."]


def dynamics(doc: dict, arrays: dict, path: Path, m: int = 2, seeds: tuple[int, ...] | None = None) -> Path | None:
    """Fig. 2: v_k(x) for every branch k and distinct x over the GD steps, one panel per seed.

    ``seeds=None``: the first two traced trials that succeeded (as the paper's examples), else the first two.
    """
    traced = sorted(int(k.rsplit("_t", 1)[1]) for k in arrays if k.startswith(f"trace_m{m}_t"))
    if seeds is None:
        ok = [t for t in traced if _loss_of(arrays, m, t) < doc["settings"]["delta"]]
        seeds = tuple((ok + [t for t in traced if t not in ok])[:2])
    keys = [f"trace_m{m}_t{t}" for t in seeds if f"trace_m{m}_t{t}" in arrays]
    if not keys:
        return None
    steps = arrays["trace_steps"]
    x = np.asarray(doc["x"])
    ux, first = np.unique(x, return_index=True)  # Toy1 has x = 0 twice: plot it once
    fig, axes = new_figure(1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        tr = arrays[key]  # (S, M, N)
        for k in range(tr.shape[1]):
            for c, j in enumerate(first):
                ax.plot(steps, tr[:, k, j], _STYLES[k % len(_STYLES)], color=_XCOLORS[c % len(_XCOLORS)],
                        label=f"branch {k + 1}, x={ux[c]:g}")
        for c, j in enumerate(first):
            ax.axhline(doc["y"][j], color=_XCOLORS[c % len(_XCOLORS)], lw=0.6, alpha=0.4)
        ax.set_title(f"{doc['problem']}, M={m}, seed {key.rsplit('_t', 1)[1]}: final loss "
                     f"{_loss_of(arrays, m, int(key.rsplit('_t', 1)[1])):.1e}")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(0, steps[-1])
        ax.set_xlabel("GD step (symlog)")
        ax.set_ylabel("branch output v_k(x)")
    axes[0][-1].legend(fontsize=7, loc="best")
    return save(fig, path)


def _loss_of(arrays: dict, m: int, trial: int) -> float:
    hit = np.flatnonzero((arrays["net_m"] == m) & (arrays["net_trial"] == trial))
    return float(arrays["loss"][hit[0]]) if hit.size else float("nan")


def success_and_covariance(doc: dict, path: Path) -> Path:
    """Fig. 3: success rate vs M (left) and example covariance matrices Cov = F·Fᵀ for M = 10 (right)."""
    per_m = doc["per_m"]
    covs = [np.asarray(c) for c in doc["covariance_examples"]["matrices"]]
    fig = plt.figure(figsize=(12, 4.2), layout="constrained")
    sub_l, sub_r = fig.subfigures(1, 2, width_ratios=[1, 1.6])
    ax = sub_l.subplots()
    ms = [d["m"] for d in per_m]
    ax.plot(ms, [100 * d["success_rate"] for d in per_m], "o-")
    ax.set_xlabel("number of branches M")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.set_title(f"{doc['problem']}: {per_m[0]['trials']} trials per M, "
                 f"{doc['settings']['steps']} GD steps")
    if covs:
        cols = min(5, len(covs))
        rows = (len(covs) + cols - 1) // cols
        axs = np.atleast_1d(sub_r.subplots(rows, cols)).ravel()
        vmax = max(float(np.abs(c).max()) for c in covs) or 1.0
        for a, c in zip(axs, covs):
            im = a.imshow(c, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            a.set_xticks([])
            a.set_yticks([])
        for a in axs[len(covs):]:
            a.axis("off")
        sub_r.colorbar(im, ax=list(axs), shrink=0.8)
        sub_r.suptitle(f"Cov = F·Fᵀ, M = {doc['covariance_examples']['m']}, first {len(covs)} trials")
    return save(fig, path)


def activity(doc: dict, arrays: dict, path: Path) -> Path:
    """Fig. 4: the response of 20 branches (left: F as a map; middle: v_i over x) and active / silent vs M."""
    m = doc["example_m"]
    F = arrays[f"F_m{m}"][0] if arrays[f"F_m{m}"].shape[0] else None  # (M, N)
    w, b = arrays[f"w_m{m}"], arrays[f"b_m{m}"]
    slope = doc["settings"]["negative_slope"]
    frac = doc["settings"]["active_fraction"]
    x, y = np.asarray(doc["x"]), np.asarray(doc["y"])
    fig, (a0, a1, a2) = new_figure(1, 3, figsize=(14, 4.2), width_ratios=[0.8, 1.3, 1.3])
    if F is not None:
        norms = np.linalg.norm(F, axis=1)
        active = norms >= frac * norms.max()
        im = a0.imshow(F, cmap="RdBu_r", vmin=-np.abs(F).max(), vmax=np.abs(F).max(), aspect="auto")
        a0.set_xticks(range(len(x)), [f"{v:g}" for v in x])
        a0.set_yticks(range(m), [f"{i + 1}{'*' if active[i] else ''}" for i in range(m)], fontsize=7)
        a0.set_xlabel("x")
        a0.set_ylabel("branch (* = active)")
        a0.set_title(f"F (M={m}): {int(active.sum())} active")
        fig.colorbar(im, ax=a0, shrink=0.8)
    grid = np.linspace(x.min() - 0.5, x.max() + 0.5, 200)
    v = np.where(w[:, None] * grid + b[:, None] > 0, 1.0, slope) * (w[:, None] * grid + b[:, None])  # (M, G)
    norms_fit = np.linalg.norm(np.where(w[:, None] * x + b[:, None] > 0, 1.0, slope) * (w[:, None] * x + b[:, None]),
                               axis=1)
    act_fit = norms_fit >= frac * norms_fit.max()
    for i in range(m):
        a1.plot(grid, v[i], lw=1.6 if act_fit[i] else 0.8, color=None if act_fit[i] else "0.6",
                label=f"branch {i + 1}" if act_fit[i] else None)
    a1.plot(grid, v.sum(0), "k--", lw=1, label="f = Σ v_i")
    a1.plot(x, y, "ko", label="data")
    a1.set_xlabel("x")
    a1.set_title(f"branch responses (M={m}, trial 0); grey = silent")
    a1.legend(fontsize=7)
    per_m = doc["per_m"]
    ms = np.array([d["m"] for d in per_m])
    act = np.array([d["mean_active"] for d in per_m])
    sd = np.array([d.get("std_active", 0.0) for d in per_m])
    a2.plot(ms, act, "o-", label="active")
    a2.fill_between(ms, act - sd, act + sd, alpha=0.2)
    a2.plot(ms, [d["mean_silent"] for d in per_m], "s-", label="silent")
    a2.set_xlabel("number of branches M")
    a2.set_ylabel("mean number of branches")
    a2.set_title(f"{doc['problem']}: active = ‖F_i‖ ≥ {frac:g}·max‖F_k‖")
    a2.grid(alpha=0.3)
    a2.legend()
    return save(fig, path)


FIGURES = ("dynamics", "success_cov", "activity")


def draw_all(out_dir: str | os.PathLike, which: tuple[str, ...] = FIGURES) -> dict[str, Path]:
    """Draw the toy figures ``which`` of ``out_dir`` from its saved results; returns ``{name: path}``."""
    out = Path(out_dir)
    doc, arrays = load_results(out)
    p = doc["problem"]
    paths = {}
    if "dynamics" in which:
        d = dynamics(doc, arrays, out / f"{p}_dynamics.png")
        if d is not None:
            paths["dynamics"] = d
    if "success_cov" in which:
        paths["success_cov"] = success_and_covariance(doc, out / f"{p}_success_cov.png")
    if "activity" in which:
        paths["activity"] = activity(doc, arrays, out / f"{p}_activity.png")
    return paths
