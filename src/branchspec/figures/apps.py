"""Figures of the applications, drawn from the saved ``.npz`` results (App. A, App. F; Figs. 12–15, 21).

Example:
    >>> sweep_strip("manip/sweeps.npz", "manip/strip.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from branchspec.apps.components import overlay, stretch, to_unit
from branchspec.budget import load_npz
from branchspec.figures.common import new_figure, save


def show_image(ax, img01, cmap=None) -> None:
    """Draw a (C, H, W) image in [0, 1] (grey when C = 1) without ticks."""
    a = np.asarray(img01)
    if a.ndim == 3:
        a = np.moveaxis(a, 0, -1)  # (H, W, C)
        if a.shape[-1] == 1:
            a, cmap = a[..., 0], "gray"
    ax.imshow(a, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def sweep_row(axes, row, alphas, value_range, label: str, titles: bool, fontsize: float = 8) -> None:
    """One App. A sweep on a row of axes: ``row[j]`` = R + Σ_{j≠k} v_j + α_j v_k, α over the columns."""
    for j in range(len(alphas)):
        show_image(axes[j], to_unit(row[j], value_range))
        if titles:
            axes[j].set_title(f"α={alphas[j]:g}", fontsize=7)
    axes[0].set_ylabel(label, fontsize=fontsize)


def sweep_strip(npz_path, out_png, cell: float = 0.9) -> Path:
    """One row per component: x(α) = R + Σ_{j≠k} v_j + α v_k for each α (Figs. 13–14, middle)."""
    z = load_npz(npz_path)
    alphas, comps, imgs, vr = z["alphas"], z["components"], z["images"], tuple(z["value_range"])
    k_n, a_n = imgs.shape[:2]  # (K, A, C, H, W)
    fig, axes = new_figure(k_n, a_n, figsize=(cell * a_n + 0.3, cell * k_n + 0.4), squeeze=False)
    for i in range(k_n):
        sweep_row(axes[i], imgs[i], alphas, vr, f"v{int(comps[i])}", titles=i == 0)
    fig.suptitle("R + Σ_{j≠k} v_j + α·v_k  (App. A)", fontsize=9)
    return save(fig, out_png)


def image_row(npz_path, out_png, title: str = "", cell: float = 1.5) -> Path:
    """A row of labelled images from an npz with ``images`` (N, C, H, W), ``labels`` and ``value_range``."""
    z = load_npz(npz_path)
    imgs, labels, vr = z["images"], [str(s) for s in z["labels"]], tuple(z["value_range"])
    n = imgs.shape[0]
    fig, axes = new_figure(1, n, figsize=(cell * n, cell + 0.5), squeeze=False)
    for j in range(n):
        show_image(axes[0, j], to_unit(imgs[j], vr))
        axes[0, j].set_title(labels[j], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, out_png)


def augment_figure(npz_path, out_png, cell: float = 1.2) -> Path:
    """Re-generation and augmented samples R + Σ g_k v_k with their gains (component augmentation)."""
    z = load_npz(npz_path)
    out, samples, gains, vr, s = z["output"], z["samples"], z["gains"], tuple(z["value_range"]), float(z["gain_range"])
    n = samples.shape[0]
    fig, axes = new_figure(1, n + 1, figsize=(cell * (n + 1), cell + 0.7), squeeze=False)
    show_image(axes[0, 0], to_unit(out, vr))
    axes[0, 0].set_title("re-gen.", fontsize=7)
    for j in range(n):
        show_image(axes[0, j + 1], to_unit(samples[j], vr))
        g = gains[:, j]  # (M,)
        axes[0, j + 1].set_title(f"g∈[{g.min():.2f},{g.max():.2f}]", fontsize=6)
    fig.suptitle(f"component augmentation, g_k ~ U[{1 - s:g}, {1 + s:g}]", fontsize=9)
    return save(fig, out_png)


def segmentation_figure(npz_path, out_png, cell: float = 1.7) -> Path:
    """App. F panels (Fig. 21): image, locator energy + initial region, target, Chan–Vese, final mask."""
    d = load_npz(npz_path)
    vr = tuple(d["value_range"])
    loc, tgt = d["locators"].tolist(), int(d["target"])
    fig, axes = new_figure(1, 5, figsize=(cell * 5, cell + 0.6), squeeze=False)
    ax = axes[0]
    show_image(ax[0], to_unit(d["image"], vr))
    ax[0].set_title("image", fontsize=8)
    show_image(ax[1], overlay(stretch(d["locator_map"])[None], d["init"], color=(0.1, 0.9, 0.1), alpha=0.35))
    ax[1].set_title(f"locator v{loc} + initial region", fontsize=8)
    show_image(ax[2], stretch(d["target_map"])[None])
    ax[2].set_title(f"target v{tgt} (HSV value)", fontsize=8)
    show_image(ax[3], overlay(to_unit(d["image"], vr), d["raw"], alpha=0.45))
    ax[3].set_title("Chan–Vese", fontsize=8)
    show_image(ax[4], overlay(to_unit(d["image"], vr), d["mask"], alpha=0.55))
    ax[4].set_title("row-wise pairs kept", fontsize=8)
    return save(fig, out_png)


def draw_manipulation(out_dir) -> list[Path]:
    """The App. A figures of a ``manipulate`` folder, from its saved ``.npz`` files.

    ``strip.png`` from ``sweeps.npz`` (Figs. 13–14), ``subsets.png`` from
    ``subsets.npz`` (Fig. 15), ``gains.png`` from ``gains.npz``; a missing
    ``.npz`` means that figure is not drawn. Returns the written paths.
    """
    out = Path(out_dir)
    figs = []
    if (out / "sweeps.npz").is_file():
        figs.append(sweep_strip(out / "sweeps.npz", out / "strip.png"))
    if (out / "subsets.npz").is_file():
        figs.append(image_row(out / "subsets.npz", out / "subsets.png", title="subset sums (Fig. 15)"))
    if (out / "gains.npz").is_file():
        figs.append(image_row(out / "gains.npz", out / "gains.png", title="per-component gains"))
    return figs
