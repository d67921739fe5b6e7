"""§6 over training, from the files ``train-classifier`` writes every epoch (``RUN/diagnostics.json``,
``RUN/metrics.csv``): branch norms against the Fig. 4 activity threshold, silence per epoch, weights against
weight decay alone (the eq. 10 mechanism) and the Fig. 5-left / Fig. 17 counts at any epoch of an M sweep.
An unfinished run draws the epochs it has.

Example:
    >>> draw_silence_over_training({"M=16": "sweep/M16", "M=32": "sweep/M32"}, "silence.png")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from branchspec.figures.common import new_figure, save


def draw_branch_norms(runs: dict, path, threshold: float = 0.1) -> Path:
    """Fig. 17 seen per branch: each run's branch norms ‖F_k‖ / max_j ‖F_j‖, sorted, against the activity threshold.

    ``runs`` maps a label (e.g. ``"M=16, 9 ep."``) to a run folder whose ``diagnostics.json`` (written by
    ``train-classifier`` every epoch) holds ``branch_norm`` per epoch; the last epoch is drawn. A silent
    branch (§6, Fig. 4 rule) is a point below the dashed line.
    """
    fig, axes = new_figure(1, 1, figsize=(6.4, 3.6), squeeze=False)
    a = axes[0, 0]
    for label, run in runs.items():
        ratios = branch_norm_ratios(run)
        a.plot(np.arange(1, len(ratios) + 1), ratios, "o-", ms=3, label=label)
    a.axhline(threshold, color="k", ls="--", lw=1, label=f"activity threshold {threshold:g}")
    a.set_xscale("log", base=2)
    a.set_ylim(0, 1.05)
    a.set_xlabel("branch rank")
    a.set_ylabel("‖F_k‖ / max ‖F_j‖")
    a.set_title("branch norms, sorted (test set)", fontsize=9)
    a.legend(fontsize=7)
    return save(fig, path)


def silence_curves(run, threshold: float = 0.1) -> dict[str, np.ndarray]:
    """Per epoch of a run (``RUN/diagnostics.json``): ``epoch`` (E,), ``silent`` (E,) the branches under
    ``threshold`` of the strongest (the Fig. 4 rule on the test responses) and ``weakest`` (E,) the weakest
    branch's ‖F_k‖ / max_j ‖F_j‖.

    Example (norms 4, 2, 0.2 then 4, 4, 4: one silent branch, then none)::

        silence_curves(RUN) == {"epoch": [1, 2], "silent": [1, 0], "weakest": [0.05, 1.0]}
    """
    return _silence(epoch_diagnostics(run), threshold)


def _silence(d: dict[str, np.ndarray], threshold: float) -> dict[str, np.ndarray]:
    """:func:`silence_curves` from a run's :func:`epoch_diagnostics`."""
    return {"epoch": d["epoch"], "silent": (d["response"] < threshold).sum(axis=1),
            "weakest": d["response"].min(axis=1)}


def draw_silence_over_training(runs: dict, path, threshold: float = 0.1) -> Path:
    """Silence as training goes, several runs on one set of axes (an M sweep, two recipes): per epoch the
    silent branches as a fraction of M (Fig. 4 rule), the weakest branch's ‖F_k‖ / max ‖F_j‖ on a log scale
    with the threshold dashed, and the fraction of training logits at the clamp (``metrics.csv``; eq. 10's
    collaborative factor is 0 on a correctly saturated logit).

    ``runs`` maps a label (``"M=32"``) to a run folder; an unfinished run draws the epochs it has."""
    fig, axes = new_figure(1, 3, figsize=(15, 3.4))
    for label, run in runs.items():
        d = epoch_diagnostics(run)
        c, m = _silence(d, threshold), d["response"].shape[1]
        mk = "o" if len(c["epoch"]) < 5 else None  # a run just started: its points, not an invisible line
        axes[0].plot(c["epoch"], c["silent"] / m, lw=0.9, marker=mk, label=f"{label} ({len(c['epoch'])} ep.)")
        axes[1].semilogy(c["epoch"], np.maximum(c["weakest"], 1e-4), lw=0.9, marker=mk, label=label)
        with (Path(run) / "metrics.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        axes[2].plot([int(r["epoch"]) for r in rows], [float(r["train_clamped"]) for r in rows], lw=0.9, label=label)
    axes[1].axhline(threshold, color="k", ls="--", lw=1)
    for ax, t in zip(axes, ("silent branches / M (test set)", "weakest ‖F_k‖ / max ‖F_j‖",
                            "training logits at the clamp")):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    return save(fig, path)


def branch_norm_ratios(run) -> np.ndarray:
    """``(M,)`` ‖F_k‖ / max_j ‖F_j‖ of a run's last logged epoch (``RUN/diagnostics.json``), in descending order.

    Example (a run whose last epoch logged norms 2, 8, 4 gives 1, 0.5, 0.25)."""
    epochs = json.loads((Path(run) / "diagnostics.json").read_text())["epochs"]
    norms = np.sort(np.asarray(epochs[-1]["branch_norm"], float))[::-1]  # (M,) descending
    return norms / norms[0]


def epoch_diagnostics(run) -> dict[str, np.ndarray]:
    """The arrays :func:`draw_epoch_diagnostics` draws, from ``RUN/diagnostics.json``: ``epoch`` (E,),
    ``response`` (E, M) ‖F_k‖ / max_j ‖F_j‖, and over the epochs that logged them ``weight_epoch`` (E',),
    ``weight_norm`` (E', M) ‖θ_k‖ and ``saturated`` (E',); ``head_norm`` (E', M) the norm of each branch's
    last layer and ``decay`` (E',) the weight-decay exponent D(e)
    (:func:`branchspec.classifier.train.decay_exponents`), each empty when the run predates it."""
    epochs = json.loads((Path(run) / "diagnostics.json").read_text())["epochs"]
    resp = np.array([e["branch_norm"] for e in epochs], float)  # (E, M)
    have = [e for e in epochs if "branch_weight_norm" in e]
    heads = [e["branch_head_norm"] for e in have if "branch_head_norm" in e]
    decay = [e["weight_decay_exponent"] for e in have if "weight_decay_exponent" in e]
    return {"epoch": np.array([e["epoch"] for e in epochs]),
            "response": resp / np.maximum(resp.max(axis=1, keepdims=True), 1e-12),
            "weight_epoch": np.array([e["epoch"] for e in have]),
            "weight_norm": np.array([e["branch_weight_norm"] for e in have], float).reshape(len(have), resp.shape[1]),
            "head_norm": np.array(heads if len(heads) == len(have) else [], float),
            "decay": np.array(decay if len(decay) == len(have) else [], float),
            "saturated": np.array([e["test_saturated"] for e in have], float)}


def _off(d: dict[str, np.ndarray], tol: float) -> np.ndarray:
    """(E', M) bool: the weights before the last layer, sqrt(‖θ_k‖² − ‖head_k‖²), under ``tol``
    (:func:`turned_off`)."""
    return np.sqrt(np.maximum(d["weight_norm"] ** 2 - d["head_norm"] ** 2, 0.0)) < tol


def turned_off(run, tol: float = 1e-2) -> dict:
    """Branches "turned off" (§6, Fig. 6) in the strict sense, per logged epoch of a run: every weight before the
    last layer gone, so the branch outputs its last layer's bias, one constant, whatever the image.

    The norm of those weights is sqrt(‖θ_k‖² − ‖head_k‖²) from the logged ``weight_norm`` and ``head_norm``
    (:func:`epoch_diagnostics`); a branch is off when it is under ``tol``. Unlike the Fig. 4 rule this does not
    flicker with the test responses. Returns ``epoch`` (E',), ``off`` (E',) the count per epoch and ``since``
    {branch: first epoch of the last stretch under ``tol``} for the branches off at the last logged epoch;
    empty arrays when the run did not log last-layer norms.

    Example (branch 1's body norm 0.5, 0.005, 0.002 over three epochs): ``off == [0, 1, 1]``, ``since == {1: 2}``.
    """
    d = epoch_diagnostics(run)
    if not d["head_norm"].size:
        return {"epoch": np.array([], int), "off": np.array([], int), "since": {}}
    off = _off(d, tol)
    since = {}
    for k in np.flatnonzero(off[-1]):
        on = np.flatnonzero(~off[:, k])
        since[int(k)] = int(d["weight_epoch"][on[-1] + 1 if on.size else 0])
    return {"epoch": d["weight_epoch"], "off": off.sum(axis=1), "since": since}


def draw_epoch_diagnostics(run, path, threshold: float = 0.1, decay=None) -> Path:
    """The eq. 10 mechanism over training (:func:`epoch_diagnostics`): every branch's response norm
    ‖F_k‖ / max_j ‖F_j‖ on the test set (below ``threshold``: silent, the Fig. 4 rule), every branch's weight
    norm ‖θ_k‖ (and its last layer's, when logged), and the saturated fraction of test logits (at the clamp on
    the target's side: zero collaborative factor, so only weight decay acts on them).

    Beside the weight norms, dashed: what weight decay alone would leave of the first logged epoch's mean norm,
    exp(−(D(e) − D(e₀))), with D the run's logged exponent or ``decay`` ((E',) over the logged epochs, for a
    run that predates it; :func:`branchspec.classifier.train.decay_exponents` from its config)."""
    d = epoch_diagnostics(run)
    decay = d["decay"] if decay is None else np.asarray(decay, float)
    heads = d["head_norm"].size > 0
    fig, axes = new_figure(1, 4 if heads else 3, figsize=(18.5 if heads else 14, 3.4))
    axes[0].plot(d["epoch"], d["response"], lw=0.8)
    axes[0].axhline(threshold, color="k", ls="--", lw=1)
    axes[0].set_title("‖F_k‖ / max ‖F_j‖ per branch (test set)", fontsize=9)
    panels = [(axes[1], d["weight_norm"], "‖θ_k‖ per branch")]
    if heads:
        panels.append((axes[2], d["head_norm"], "last layer's ‖θ_k‖ per branch"))
    for ax, norms, title in panels:
        ax.set_title(title, fontsize=9)
        if not len(d["weight_epoch"]):
            continue
        ax.plot(d["weight_epoch"], norms, lw=0.8)
        if decay.size == len(d["weight_epoch"]):
            ax.plot(d["weight_epoch"], norms[0].mean() * np.exp(-(decay - decay[0])), "k--", lw=1.2,
                    label="weight decay alone")
            ax.legend(fontsize=7)
    sat = axes[-1]
    if len(d["weight_epoch"]):
        sat.plot(d["weight_epoch"], d["saturated"], "o-", ms=3)
    sat.set_title("saturated test logits (at the clamp, right side)", fontsize=9)
    for a in axes:
        a.set_xlabel("epoch")
    return save(fig, path)


def silence_vs_m(runs: dict, epochs=None, threshold: float = 0.1, window: int = 1,
                 rule: str = "response") -> dict[str, np.ndarray]:
    """Fig. 5 (left) / Fig. 17 at chosen epochs of an M sweep: #active and #silent branches (Fig. 4 rule on
    the test responses, as :func:`silence_curves`) per M, per epoch.

    ``runs`` maps M to a run folder (``SWEEP/M<m>``); ``epochs`` defaults to four epochs up to the last one
    every run has logged. With ``window`` w > 1 a branch counts as silent at epoch e when it is under the
    threshold in at least half of the epochs e − w + 1 … e (a run whose per-epoch count flickers, e.g. under
    strong weight decay, read over its last w epochs). ``rule="weights"`` counts instead the branches turned
    off (:func:`turned_off` with ``threshold`` as its tolerance, e.g. 1e-2; runs that logged their last layers'
    norms). Returns ``M`` (R,), ``epoch`` (T,), ``active`` and ``silent`` (T, R) — NaN where a run has not
    reached the epoch —, ``last`` (R,) each run's last logged epoch, and the ``rule`` and ``window`` used
    (:func:`draw_silence_counts` draws it).

    Example (runs of M = 2 and 4, the second with one branch under the threshold at epoch 3)::

        silence_vs_m({2: A, 4: B}, epochs=[3])["silent"] == [[0, 1]]
    """
    if window < 1:
        raise ValueError(f"window: must be at least 1, got {window}")
    if rule not in ("response", "weights"):
        raise ValueError(f"rule: 'response' (Fig. 4) or 'weights' (turned off), got {rule!r}")
    ms = sorted(runs)
    diags = [epoch_diagnostics(runs[m]) for m in ms]
    last = np.array([int(d["epoch"][-1]) for d in diags])
    if epochs is None:
        epochs = np.unique(np.linspace(1, last.min(), 4).round().astype(int))
    epochs = np.asarray(epochs, int)
    silent = np.full((len(epochs), len(ms)), np.nan)
    for j, d in enumerate(diags):
        if rule == "weights" and not d["head_norm"].size:
            raise ValueError(f"rule='weights': {runs[ms[j]]} did not log its last layers' norms")
        logged = d["epoch"] if rule == "response" else d["weight_epoch"]
        under = d["response"] < threshold if rule == "response" else _off(d, threshold)  # (E, M) per logged epoch
        for i, e in enumerate(epochs):
            if e in logged:
                rows = (logged > e - window) & (logged <= e)
                silent[i, j] = (under[rows].mean(axis=0) >= 0.5).sum()
    return {"M": np.array(ms), "epoch": epochs, "active": np.array(ms, float)[None, :] - silent, "silent": silent,
            "last": last, "rule": rule, "window": window}


def draw_silence_vs_m(runs: dict, path, epochs=None, threshold: float = 0.1, window: int = 1,
                      rule: str = "response") -> Path:
    """:func:`silence_vs_m` drawn as Fig. 17 (:func:`draw_silence_counts`)."""
    return draw_silence_counts(silence_vs_m(runs, epochs, threshold, window, rule), path)


def draw_silence_counts(s: dict, path) -> Path:
    """Counts of :func:`silence_vs_m` as Fig. 17: #active (solid) and #silent (dashed) vs M on log axes, one
    colour per epoch; the title names each run's last logged epoch, so a sweep still training reads as such."""
    fig, axes = new_figure(1, 1, figsize=(8.2, 4.0), squeeze=False)
    a = axes[0, 0]
    for i, e in enumerate(s["epoch"]):
        col = f"C{i % 10}"
        a.plot(s["M"], s["active"][i], "o-", color=col, label=f"epoch {e}: active")
        a.plot(s["M"], s["silent"][i], "s--", color=col, label=f"epoch {e}: silent")
    a.set_xscale("log", base=2)
    a.set_yscale("symlog", base=2, linthresh=1)
    a.set_ylim(bottom=-0.25)  # counts are >= 0: no negative symlog ticks
    a.set_xticks(s["M"], [str(m) for m in s["M"]])
    a.set_xlabel("M (branches)")
    a.set_ylabel("# branches")
    trained = ", ".join(f"M={m}: {e}" for m, e in zip(s["M"], s["last"]))
    how = (", silent: turned off" if s["rule"] == "weights" else "") + (
        f", in ≥ half of the last {s['window']} epochs" if s["window"] > 1 else "")
    a.set_title(f"active / silent vs M (Fig. 5 left, 17{how})\nepochs logged — {trained}", fontsize=8)
    a.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes, off the lines
    return save(fig, path)
