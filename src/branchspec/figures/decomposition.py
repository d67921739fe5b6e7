"""Figures of decompositions, drawn from saved ``.npz`` files only (Figs. 10–11, 18–20).

Example:
    >>> decomposition_grid(sorted(Path("out").glob("*.npz")), "out/grid.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from branchspec.apps.components import Decomposition, stretch, to_unit
from branchspec.figures.common import new_figure, save


def _show(ax, img01: np.ndarray) -> None:
    a = np.moveaxis(np.asarray(img01), 0, -1)  # (H, W, C)
    ax.imshow(a[..., 0] if a.shape[-1] == 1 else a, cmap="gray" if a.shape[-1] == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def decomposition_grid(npz_paths, out_png, cell: float = 1.0, title: str | None = None) -> Path:
    """Rows = images; columns input, re-generation, R, then the M components (stretched).

    Like Figs. 10–11 (top) and 18–20: components are shown with the
    per-component symmetric stretch of :func:`branchspec.apps.components.stretch`
    (zero = grey); input, re-generation and R linearly.
    """
    decs = [Decomposition.load(p) for p in npz_paths]
    if not decs:
        raise ValueError("no decompositions to draw")
    m = max(d.num_components for d in decs)
    cols = 3 + m
    fig, axes = new_figure(len(decs), cols, figsize=(cell * cols, cell * len(decs) + (0.4 if title else 0.2)),
                           squeeze=False)
    heads = ["input", "re-gen.", "R"] + [f"v{k}" for k in range(m)]
    for i, d in enumerate(decs):
        vr = d.value_range
        panels = [to_unit(d.input, vr) if d.input is not None else None, to_unit(d.output, vr), to_unit(d.R, vr)]
        panels += [stretch(v) for v in d.components]
        for j in range(cols):
            ax = axes[i, j]
            if j < len(panels) and panels[j] is not None:
                _show(ax, panels[j])
            else:
                ax.axis("off")
            if i == 0:
                ax.set_title(heads[j], fontsize=8)
        if d.domain:
            axes[i, 0].set_ylabel(d.domain, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, out_png)


def added_rows(npz_path, out_png, cell: float = 1.1) -> Path:
    """Fig. 10 for one image: top the stretched components, bottom re-generation + v_k (no amplification)."""
    d = Decomposition.load(npz_path)
    m = d.num_components
    fig, axes = new_figure(2, m, figsize=(cell * m, cell * 2 + 0.3), squeeze=False)
    for k, v in enumerate(d.components):
        _show(axes[0, k], stretch(v))
        axes[0, k].set_title(f"v{k}", fontsize=8)
        _show(axes[1, k], to_unit(d.output + v, d.value_range))
    axes[0, 0].set_ylabel("stretched", fontsize=7)
    axes[1, 0].set_ylabel("re-gen. + v_k", fontsize=7)
    return save(fig, out_png)


def correlation_figure(json_path, out_png) -> Path:
    """|correlation| between branch outputs and each branch's energy share, from decomposition.json."""
    doc = json.loads(Path(json_path).read_text())
    corr = np.abs(np.asarray(doc["correlation"]))
    energy = np.asarray(doc["energy_share"])
    fig, (a, b) = new_figure(1, 2, figsize=(7.0, 3.0))
    im = a.imshow(corr, vmin=0, vmax=1, cmap="viridis")
    a.set_title(f"|correlation| (mean off-diag {doc['mean_abs_correlation']:.3f})", fontsize=9)
    a.set_xlabel("branch")
    a.set_ylabel("branch")
    fig.colorbar(im, ax=a, shrink=0.8)
    active = np.asarray(doc["active_mask"], bool)
    b.bar(np.arange(len(energy)), energy, color=np.where(active, "tab:blue", "lightgray"))
    b.set_title(f"energy share ‖v_k‖² (active {doc['active']}, silent {doc['silent']})", fontsize=9)
    b.set_xlabel("branch")
    return save(fig, out_png)


PROFILE_PANELS = (
    ("energy_share", "energy share ‖v_k‖² / Σ‖v‖²", (0, None)),
    ("frequency_centroid", "radial-frequency centroid (cycles/px)", (0, 0.71)),
    ("chroma_fraction", "chroma fraction (energy off grey)", (0, 1)),
    ("spatial_entropy", "spatial entropy of |v_k|² (1 = spread)", (0, 1)),
    ("transfer_change_share", "share of change under class transfer", (0, None)),
    ("input_dependence", "input dependence (0: a template)", (0, 1)),
)


def profile_figure(json_path, out_png) -> Path:
    """One bar panel per profile, one bar per branch, from decomposition.json (``profiles`` and,
    when the judge ran, ``judge.transfer_change_share`` and ``judge.input_dependence``); see :mod:`branchspec.apps.profiles`."""
    doc = json.loads(Path(json_path).read_text())
    prof = dict(doc["profiles"])
    judge = doc.get("judge") or {}
    for key in ("transfer_change_share", "input_dependence"):
        if judge.get(key) is not None:
            prof[key] = judge[key]
    panels = [p for p in PROFILE_PANELS if prof.get(p[0]) is not None]
    fig, axes = new_figure(1, len(panels), figsize=(2.6 * len(panels), 2.6), squeeze=False)
    for ax, (key, title, (lo, hi)) in zip(axes[0], panels):
        vals = np.asarray(prof[key], float)
        ax.bar(np.arange(len(vals)), vals, color="tab:blue")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("branch k", fontsize=8)
        ax.set_xticks(np.arange(len(vals)))
        ax.tick_params(labelsize=7)
        ax.set_ylim(lo, hi if hi is not None else max(1e-9, 1.1 * float(vals.max())))
    return save(fig, out_png)
