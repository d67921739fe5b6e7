"""Montages of the applications over a folder of decompositions (App. A, Figs. 13–15; App. F, Figs. 12, 21).

Drawn from the files :mod:`branchspec.apps.batch` writes, never from a model:

* :func:`segmentation_montage` — ``montage.npz`` of ``segment`` on a folder:
  every image with its final eye mask tinted and outlined in magenta and the initial region of
  App. F (top locator energy) outlined in green; the title says whether an
  eye pair was found;
* :func:`sweep_montage` — ``sweeps.npz`` of ``manipulate`` on a folder: one
  row per image, x(α) = R + Σ_{j≠k} v_j + α·v_k over the α's (Figs. 13–14);
* :func:`subsets_montage` — ``subsets.npz``: one row per image, the
  re-generation and the subset sums R + Σ_{k∈S} v_k (Fig. 15).

Example:
    >>> segmentation_montage("seg/montage.npz", "seg/montage.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from branchspec.apps.components import overlay, to_unit
from branchspec.budget import load_npz
from branchspec.figures.apps import show_image, sweep_row
from branchspec.figures.common import new_figure, save


def _short(name: str, n: int = 14) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1):]


def _grid(rows: int, cols: int, w: float, h: float, left: float, top_in: float):
    """A fixed grid of axes: constrained layout takes minutes on hundreds of axes, a fixed one does not."""
    fig, axes = new_figure(rows, cols, figsize=(w, h), squeeze=False, layout=None)
    fig.subplots_adjust(left=left, right=0.995, bottom=0.005, top=1 - top_in / h, wspace=0.05, hspace=0.3)
    return fig, axes


def _title(fig, text: str) -> None:
    fig.suptitle(text, fontsize=8, y=1 - 0.08 / fig.get_figheight(), va="top")


def _first(n: int, total: int) -> str:
    return f"; first {n} of {total} images" if n < total else ""


def segmentation_montage(npz_path, out_png, cols: int = 7, cell: float = 1.3) -> Path:
    """All overlays of a folder segmentation in one figure (App. F, Fig. 12 style), pairs counted in the title."""
    z = load_npz(npz_path)
    imgs, masks, inits, names, found, vr = (z["images"], z["masks"], z["inits"], [str(s) for s in z["names"]],
                                           z["found"].astype(bool), tuple(z["value_range"]))
    eye = z["eye_like"].astype(bool) if "eye_like" in z else np.zeros_like(found)  # older montages: none
    n = imgs.shape[0]
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = _grid(rows, cols, cell * cols, (cell + 0.25) * rows + 0.4, left=0.01, top_in=0.6)
    for i in range(rows * cols):
        ax = axes[i // cols, i % cols]
        if i >= n:
            ax.axis("off")
            continue
        show_image(ax, overlay(to_unit(imgs[i], vr), masks[i], color=(1.0, 0.0, 1.0), alpha=0.6))
        if inits[i].any():
            ax.contour(inits[i].astype(float), levels=[0.5], colors=["#2c2"], linewidths=0.6)
        if masks[i].any():  # outlined too: a tint alone vanishes on a similar colour
            ax.contour(masks[i].astype(float), levels=[0.5], colors=["#f0f"], linewidths=1.2)
        ax.set_title(f"{_short(names[i])} {'eye-like pair' if eye[i] else 'pair' if found[i] else '—'}", fontsize=6,
                     color="#060" if eye[i] else "#a60" if found[i] else "#555")
    _title(fig, f"App. F on {n} images: pair of regions kept on {int(found.sum())}, placed like eyes on {int(eye.sum())}\n"
                "(magenta: kept mask, green: initial region)")
    return save(fig, out_png)


def sweep_montage(npz_path, out_png, cell: float = 0.8, max_rows: int = 24) -> Path:
    """One row per image (the first ``max_rows``): its chosen component swept over α (App. A, Figs. 13–14)."""
    z = load_npz(npz_path)
    imgs, comps, alphas, names, vr = (z["images"], z["components"], z["alphas"], [str(s) for s in z["names"]],
                                      tuple(z["value_range"]))
    total, a = imgs.shape[:2]  # (N, A, C, H, W)
    n = min(total, max_rows)
    fig, axes = _grid(n, a, cell * a + 0.9, cell * n + 0.6, left=0.9 / (cell * a + 0.9), top_in=0.6)
    for i in range(n):
        sweep_row(axes[i], imgs[i], alphas, vr, f"{_short(names[i], 10)}\nv{int(comps[i])}", titles=i == 0,
                  fontsize=6)
    _title(fig, "R + Σ_{j≠k} v_j + α·v_k per image, k = chosen component (App. A)" + _first(n, total))
    return save(fig, out_png)


def subsets_montage(npz_path, out_png, cell: float = 1.0, max_rows: int = 24) -> Path:
    """One row per image (the first ``max_rows``): input, re-generation, then R + Σ_{k∈S} v_k per subset S (Fig. 15)."""
    z = load_npz(npz_path)
    imgs, labels, names, vr = z["images"], z["labels"], [str(s) for s in z["names"]], tuple(z["value_range"])
    total, s = imgs.shape[:2]  # (N, 2 + S, C, H, W)
    n = min(total, max_rows)
    fig, axes = _grid(n, s, cell * s + 0.9, (cell + 0.2) * n + 0.5, left=0.9 / (cell * s + 0.9), top_in=0.55)
    for i in range(n):
        for j in range(s):
            show_image(axes[i, j], to_unit(imgs[i, j], vr))
            axes[i, j].set_title(str(labels[i, j]), fontsize=5)
        axes[i, 0].set_ylabel(_short(names[i], 10), fontsize=6)
    _title(fig, "subset sums per image (Fig. 15)" + _first(n, total))
    return save(fig, out_png)
