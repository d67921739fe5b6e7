"""Classifier figures (§6: Figs. 5–8, 16, 17), drawn only from saved results.

:func:`draw_analysis` reads ``analysis.json`` / ``analysis.npz`` written by
:func:`branchspec.classifier.analysis_run.analyze`; :func:`draw_sweep` reads
``sweep.json``; :func:`draw_training` reads a run's ``metrics.csv``. So
every figure can be redrawn without retraining.

Example:
    >>> paths = draw_analysis("RUN/analysis")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from branchspec.compact import load_expanded, log_magnitude
from branchspec.figures.common import new_figure, save


def _sym(ax, mat, title, xlabel, ylabel, cmap="RdBu_r"):
    mat = np.asarray(mat, dtype=float)
    lim = float(np.abs(mat).max()) or 1.0
    im = ax.imshow(mat, cmap=cmap, vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return im


def draw_class_means(res: dict, path: Path) -> Path:
    """Fig. 6: each branch's mean output per class — left: true-class logit, right: full K×C per branch."""
    cm = np.asarray(res["class_means"])  # (M, K, C)
    m, k, _ = cm.shape
    names = res["class_names"]
    diag = cm[:, np.arange(k), np.arange(k)]  # (M, K): mean v_k(x)[c] over class c
    cols = int(np.ceil(np.sqrt(m)))
    rows = int(np.ceil(m / cols))
    fig, axes = new_figure(rows, cols + 2, figsize=(2.0 * (cols + 2), 2.0 * rows + 0.6), squeeze=False)
    gs = axes[0, 0].get_gridspec()
    for a in axes[:, :2].ravel():
        a.remove()
    big = fig.add_subplot(gs[:, :2])
    im = _sym(big, diag, "mean true-class output per branch", "class", "branch")
    big.set_xticks(range(k), names, rotation=90, fontsize=7)
    big.set_yticks(range(m))
    fig.colorbar(im, ax=big, shrink=0.6)
    lim = float(np.abs(cm).max()) or 1.0
    for i in range(rows * cols):
        ax = axes[i // cols, 2 + i % cols]
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= m:
            ax.axis("off")
            continue
        ax.imshow(cm[i], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(f"branch {i}", fontsize=8)
    fig.suptitle("Fig. 6: branch outputs — mean v_k(x) per class (rows: class of x, cols: logit)", fontsize=10)
    return save(fig, path)


def draw_covariance(res: dict, path: Path) -> Path:
    """Fig. 5 panel 2: inter-branch covariance F·Fᵀ, and branch norms with the active threshold."""
    cov = np.asarray(res["covariance"])
    norms = np.asarray(res["branch_norms"])
    fig, (a, b) = new_figure(1, 2, figsize=(9, 3.8))
    im = a.imshow(cov, cmap="viridis", interpolation="nearest")
    a.set_title("covariance F·Fᵀ of branch responses (Fig. 5)", fontsize=9)
    a.set_xlabel("branch")
    a.set_ylabel("branch")
    fig.colorbar(im, ax=a, shrink=0.8)
    active = set(res["active_branches"])
    colors = ["tab:blue" if i in active else "tab:gray" for i in range(len(norms))]
    b.bar(range(len(norms)), norms, color=colors)
    b.axhline(res["active_fraction_threshold"] * norms.max(), color="k", ls="--", lw=0.8)
    b.set_title(f"‖F_k‖: {res['num_active']} active (blue), {res['num_silent']} silent", fontsize=9)
    b.set_xlabel("branch")
    return save(fig, path)


def draw_confidence(res: dict, path: Path) -> Path:
    """Fig. 7: per-sample branch confidence for random test samples of every class."""
    cs = res["confidence_samples"]
    vals = np.asarray(cs["values"])  # (M, S)
    labels = np.asarray(cs["labels"])
    fig, ax = new_figure(figsize=(11, 0.25 * vals.shape[0] + 2))
    im = _sym(ax, vals, "Fig. 7: branch confidence v_k[y] − mean_{c≠y} v_k[c] on random test samples",
              "test samples, grouped by class", "branch")
    edges = np.nonzero(np.diff(labels))[0] + 0.5
    for e in edges:
        ax.axvline(e, color="k", lw=0.6)
    starts = np.concatenate([[0], edges + 0.5])
    ends = np.concatenate([edges + 0.5, [len(labels)]])
    names = res["class_names"]
    ax.set_xticks((starts + ends) / 2 - 0.5, [names[labels[int(s)]] for s in starts], fontsize=7, rotation=45)
    ax.set_yticks(range(vals.shape[0]))
    fig.colorbar(im, ax=ax, shrink=0.8)
    return save(fig, path)


def draw_galleries(res: dict, arrays: dict, path: Path) -> Path:
    """Figs. 8, 16: the most confident test images of chosen (branch, class) pairs."""
    pairs = res["galleries"]["pairs"]
    frac = res["galleries"]["top_fraction"]
    ncol = max([len(p["shown"]) for p in pairs] + [1])
    fig, axes = new_figure(max(1, len(pairs)), ncol, figsize=(max(6.0, 1.1 * ncol + 1), 1.3 * max(1, len(pairs)) + 0.5), squeeze=False)
    for r, p in enumerate(pairs):
        imgs = arrays.get(f"gallery_{r}", np.zeros((0, 1, 1, 3), np.uint8))
        for c in range(ncol):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(imgs):
                ax.imshow(imgs[c], interpolation="nearest")
                ax.set_xlabel(f"{p['confidence'][c]:.2f}", fontsize=6)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(f"branch {p['branch']}\n{res['class_names'][p['class']]}", fontsize=8)
    fig.suptitle(f"Figs. 8/16: top {100 * frac:.0f} % most confident test images per (branch, class)", fontsize=10)
    return save(fig, path)


def draw_ablation(res: dict, path: Path) -> Path:
    """Branch ablation: accuracy with each branch silenced; with only the top-k branches kept."""
    ab = res["ablation"]
    fig, (a, b) = new_figure(1, 2, figsize=(9, 3.4))
    w = np.asarray(ab["without_branch"])
    a.bar(range(len(w)), w, color="tab:orange")
    a.axhline(ab["full"], color="k", ls="--", lw=0.8, label=f"all branches {ab['full']:.3f}")
    a.set_xlabel("silenced branch")
    a.set_ylabel("test accuracy")
    a.set_title("one branch silenced", fontsize=9)
    a.legend(fontsize=7)
    ks = sorted(int(k) for k in ab["keep_top"])
    b.plot(ks, [ab["keep_top"][str(k)] if str(k) in ab["keep_top"] else ab["keep_top"][k] for k in ks], "o-")
    b.set_xscale("log", base=2)
    b.set_xlabel("branches kept (top-k by ‖F_k‖)")
    b.set_title("all but the top-k silenced", fontsize=9)
    return save(fig, path)


def draw_hessian(res: dict, matrices: dict, path: Path) -> Path | None:
    """Fig. 5 panels 3–4: |H| of the first-layer parameters at initialisation and after training.

    ``matrices``: ``{"hessian_init": H, "hessian_trained": H}`` from ``analysis.npz`` (unpacked by
    :func:`branchspec.compact.load_expanded`); drawn: :func:`branchspec.compact.log_magnitude` of each.
    """
    h = res.get("hessian", {})
    if not h.get("available"):
        return None
    fig, axes = new_figure(1, 2, figsize=(9, 4))
    for ax, tag in zip(axes, ("init", "trained")):
        ax.imshow(log_magnitude(matrices[f"hessian_{tag}"]), cmap="magma", interpolation="nearest")
        for bnd in h[tag]["boundaries"][1:-1]:
            ax.axhline(bnd - 0.5, color="w", lw=0.3)
            ax.axvline(bnd - 0.5, color="w", lw=0.3)
        ax.set_title(f"log10 |H| first layer, {'initialisation' if tag == 'init' else 'trained'}", fontsize=9)
    return save(fig, path)


def draw_analysis(out_dir) -> list[Path]:
    """Every analysis figure from ``out_dir/analysis.json`` and ``analysis.npz`` (the Hessians packed by
    :mod:`branchspec.compact`, or as plain float32 matrices as written before)."""
    out = Path(out_dir)
    res = json.loads((out / "analysis.json").read_text())
    arrays = load_expanded(out / "analysis.npz", keys=lambda k: k.startswith(("gallery_", "hessian_")))
    paths = [draw_class_means(res, out / "fig6_class_means.png"), draw_covariance(res, out / "fig5_covariance.png"),
             draw_confidence(res, out / "fig7_confidence.png"), draw_galleries(res, arrays, out / "fig8_galleries.png"),
             draw_ablation(res, out / "ablation.png")]
    h = draw_hessian(res, arrays, out / "fig5_hessian.png")
    return paths + ([h] if h else [])


def draw_sweep(sweep_json, path) -> Path:
    """Figs. 5 panel 1, 17: #active and #silent branches vs M (log scale), plus each M's covariance (titled with
    its epochs and train loss above the floor H(p) when the sweep recorded them, e.g. a ``--stop-loss`` sweep)."""
    s = json.loads(Path(sweep_json).read_text())
    ms = s["M"]
    fig, axes = new_figure(1, 1 + len(ms), figsize=(4 + 2.2 * len(ms), 3.4), squeeze=False)
    a = axes[0, 0]
    a.plot(ms, s["active"], "o-", label="active")
    a.plot(ms, s["silent"], "s-", label="silent")
    a.set_xscale("log", base=2)
    a.set_yscale("symlog", base=2, linthresh=1)
    a.set_ylim(bottom=-0.25)  # counts are >= 0: no negative symlog ticks
    a.set_xlabel("M (branches)")
    a.set_ylabel("# branches")
    a.set_title("active / silent vs M (Fig. 5, 17)", fontsize=9)
    a.legend(fontsize=8)
    fits = zip(s.get("epochs") or [None] * len(ms), s.get("train_split_loss") or [None] * len(ms))
    for ax, m, cov, acc, (ep, loss) in zip(axes[0, 1:], ms, s["covariance"], s["test_acc"], fits):
        ax.imshow(np.asarray(cov), cmap="viridis", interpolation="nearest")
        fit = f"\n{ep} ep, train loss H{loss - s['loss_floor']:+.3f}" if ep is not None else ""
        ax.set_title(f"M={m} cov, acc {acc:.2f}{fit}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)


def sweep_outputs(sweep_json, threshold: float = 0.1) -> list[dict]:
    """Fig. 17 left's data from a ``sweep.json``, per M: each branch's mean output for the true class
    (``true_class``, ``(M, K)``: the left panel of Fig. 6), its response norm ``‖F_k‖ = sqrt(Cov_kk)``
    relative to the strongest (``ratio``), both in order of decreasing norm (``order``: the branch indices),
    and ``silent``, how many of them fall below ``threshold`` (the Fig. 4 rule the sweep counted with)."""
    return _sweep_outputs(json.loads(Path(sweep_json).read_text()), threshold)


def _sweep_outputs(s: dict, threshold: float) -> list[dict]:
    rows = []
    for m, cm, cov in zip(s["M"], s["class_means"], s["covariance"]):
        cm = np.asarray(cm, dtype=float)  # (M, K, C)
        k = cm.shape[1]
        norms = np.sqrt(np.clip(np.diagonal(np.asarray(cov, dtype=float)), 0, None))
        ratio = norms / (norms.max() or 1.0)
        order = np.argsort(-ratio, kind="stable")
        rows.append({"M": m, "order": order, "ratio": ratio[order], "silent": int((ratio < threshold).sum()),
                     "true_class": cm[:, np.arange(k), np.arange(k)][order]})
    return rows


def draw_sweep_outputs(sweep_json, path, threshold: float = 0.1) -> Path:
    """Fig. 17 left: for every M of a sweep, the branches' mean true-class outputs per class (Fig. 6 left),
    strongest branch on top; a dashed line separates the silent branches (below ``threshold`` of the strongest
    response norm, Fig. 4's rule). Drawn from ``sweep.json`` alone (:func:`sweep_outputs`)."""
    s = json.loads(Path(sweep_json).read_text())
    rows = _sweep_outputs(s, threshold)
    names = s.get("class_names") or [str(c) for c in range(rows[0]["true_class"].shape[1])]
    fig, axes = new_figure(1, len(rows), figsize=(2.6 * len(rows) + 1, 6.0), squeeze=False)
    for ax, r in zip(axes[0], rows):
        im = _sym(ax, r["true_class"], f"M={r['M']}: {r['M'] - r['silent']} active / {r['silent']} silent",
                  "class", "branch (by ‖F_k‖)")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks([])
        if r["silent"]:
            ax.axhline(r["M"] - r["silent"] - 0.5, color="k", ls="--", lw=0.8)
        fig.colorbar(im, ax=ax, shrink=0.5)
    fig.suptitle("Fig. 17 left: mean true-class output of every branch, per M (dashed: silent below)",
                 fontsize=10)
    return save(fig, path)


def draw_training(metrics_csv, path) -> Path:
    """Train / test accuracy per epoch from a run's ``metrics.csv``."""
    with Path(metrics_csv).open() as fh:
        rows = list(csv.DictReader(fh))
    ep = [int(r["epoch"]) for r in rows]
    fig, ax = new_figure(figsize=(5, 3.2))
    ax.plot(ep, [float(r["train_acc"]) for r in rows], "o-", label="train (augmented)")
    ax.plot(ep, [float(r["test_acc"]) for r in rows], "s-", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    return save(fig, path)


def draw_recipe_comparison(runs: dict, path) -> Path:
    """Several runs side by side from their ``metrics.csv`` / ``config.json``: train loss against
    the floor H(p) of the §6 loss, test accuracy, and the fractions of clamped logits and dead
    samples on the test set per epoch — the curves behind a choice of training recipe.

    ``runs`` maps a label to a run folder."""
    fig, axes = new_figure(1, 4, figsize=(15, 3.4))
    floor = None
    for label, run in runs.items():
        with (Path(run) / "metrics.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        cfg = json.loads((Path(run) / "config.json").read_text())
        floor = cfg.get("loss_floor", floor)
        ep = [int(r["epoch"]) for r in rows]
        col = lambda k: [float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]  # noqa: E731
        axes[0].plot(ep, col("train_loss"), "o-", label=label)
        acc = col("ema_test_acc") if all(r.get("ema_test_acc") for r in rows) else col("test_acc")
        axes[1].plot(ep, acc, "o-", label=label)
        axes[2].plot(ep, col("test_clamped"), "o-", label=label)
        axes[3].plot(ep, col("test_dead"), "o-", label=label)
    if floor:
        axes[0].axhline(floor, color="k", ls="--", lw=0.8, label="floor H(p)")
    for ax, t in zip(axes, ("train loss", "test accuracy (EMA if kept)", "test logits with |f| > 1",
                            "dead test samples")):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    return save(fig, path)
