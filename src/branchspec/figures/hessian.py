"""Hessian figures (Fig. 5, panels 3–4), drawn from saved ``hessian.json`` / ``hessian.npz`` only.

* :func:`heatmaps` — |H| on a log colour scale with the branch boundaries
  drawn; with a comparison Hessian (e.g. at initialisation) the two side by
  side, the comparison on the left (like Fig. 5: initialisation, then after
  training).
* :func:`block_norm_matrix` — the M×M Frobenius block norms (log scale), one
  panel per saved Hessian.
* :func:`draw` — both, from a results folder.

Example:
    >>> # after `branchspec hessian --checkpoint C --out DIR`:
    >>> # draw("DIR") -> [DIR/hessian_heatmap.png, DIR/block_norms.png]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm

from branchspec.budget import load_npz
from branchspec.figures.common import new_figure, save

FLOOR = 1e-7  # colour floor relative to the largest |entry| of a panel


def _log_norm(values: list[np.ndarray]) -> LogNorm:
    top = max(float(np.abs(v).max()) for v in values)
    top = top if top > 0 else 1.0
    return LogNorm(vmin=top * FLOOR, vmax=top)


def _boundaries(ax, boundaries, n):
    for b in boundaries[1:-1]:
        ax.axhline(b - 0.5, color="white", lw=0.6)
        ax.axvline(b - 0.5, color="white", lw=0.6)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    m = len(boundaries) - 1
    step = max(1, m // 16)
    centres = [(boundaries[k] + boundaries[k + 1] - 1) / 2 for k in range(0, m, step)]
    ax.set_xticks(centres, [str(k) for k in range(0, m, step)], fontsize=7)
    ax.set_yticks(centres, [str(k) for k in range(0, m, step)], fontsize=7)


def heatmaps(panels: list[tuple[str, np.ndarray]], boundaries, path: Path, title: str = "") -> Path:
    """|H| per panel, log colour scale shared by all panels, branch boundaries in white."""
    fig, axes = new_figure(1, len(panels), figsize=(4.6 * len(panels) + 0.8, 4.4), squeeze=False)
    norm = _log_norm([h for _, h in panels])
    im = None
    for ax, (name, h) in zip(axes[0], panels):
        a = np.abs(h)
        im = ax.imshow(np.maximum(a, norm.vmin), cmap="magma", norm=norm, interpolation="nearest")
        _boundaries(ax, boundaries, a.shape[0])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("parameters of branch l")
    axes[0][0].set_ylabel("parameters of branch k")
    fig.colorbar(im, ax=axes[0].tolist(), label="|H| (log)", shrink=0.85)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def block_norm_matrix(panels: list[tuple[str, np.ndarray]], path: Path, title: str = "") -> Path:
    """M×M block Frobenius norms per panel, log colour scale, values written when M ≤ 12."""
    fig, axes = new_figure(1, len(panels), figsize=(4.2 * len(panels) + 0.8, 4.0), squeeze=False)
    for ax, (name, nm) in zip(axes[0], panels):
        norm = _log_norm([nm])
        im = ax.imshow(np.maximum(nm, norm.vmin), cmap="viridis", norm=norm, interpolation="nearest")
        m = nm.shape[0]
        if m <= 12:
            for k in range(m):
                for l in range(m):
                    ax.text(l, k, f"{nm[k, l]:.1g}", ha="center", va="center", fontsize=6, color="w")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("branch l")
        ax.set_ylabel("branch k")
        fig.colorbar(im, ax=ax, label="||H_kl||_F", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def _label(doc: dict, default: str) -> str:
    return f"{doc.get('label', default)} (block-diag. {doc['block_diagonality']:.3f})"


def draw(out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Draw the figures of a ``branchspec hessian`` results folder; returns their paths.

    ``hessian_heatmap.png`` needs ``hessian.npz`` (absent when only probes
    were computed); ``block_norms.png`` needs only ``hessian.json``.
    """
    out_dir = Path(out_dir)
    doc = json.loads((out_dir / "hessian.json").read_text())
    cmp = doc.get("compare")
    what = f"{doc.get('params', '')} parameters, M={doc['num_branches']}, {doc['num_params']} params"
    paths = []
    npz = out_dir / "hessian.npz"
    if npz.is_file():
        z = load_npz(npz)
        panels = []
        if cmp is not None and "H_compare" in z:
            panels.append((_label(cmp, "compare"), z["H_compare"]))
        panels.append((_label(doc, "checkpoint"), z["H"]))
        bnd = z["boundaries"].tolist()
        paths.append(heatmaps(panels, bnd, out_dir / f"{prefix}hessian_heatmap.png", f"|H|, {what}"))
    bl = []
    if cmp is not None:
        bl.append((cmp.get("label", "compare"), np.asarray(cmp["block_norms"])))
    bl.append((doc.get("label", "checkpoint"), np.asarray(doc["block_norms"])))
    paths.append(block_norm_matrix(bl, out_dir / f"{prefix}block_norms.png", f"block norms, {what}"))
    return paths
