"""Run the §6 analysis on a checkpoint, and the M sweep (Figs. 5–8, 16, 17).

:func:`analyze` reads a classifier checkpoint, computes the branch outputs
``(M, N, C)`` on the test split, applies the pure functions of
:mod:`branchspec.classifier.analysis` and writes ``analysis.json`` (numbers),
``analysis.npz`` (branch outputs, labels, gallery images, the first-layer Hessians packed by
:mod:`branchspec.compact`) and the figures,
drawn from those two files by :mod:`branchspec.figures.classifier`.
:func:`run_sweep` trains one model per M and records #active / #silent.

Example:
    >>> res = analyze("RUN/last.json", "digits", "RUN/analysis")  # doctest: +SKIP
    >>> res["accuracy"], res["num_active"]                          # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

import branchspec.classifier.analysis as A
from branchspec.data.imageset import ImageSet, split_for, test_set_for
from branchspec.branched import as_branched
from branchspec.errors import BranchspecError, ConfigError
from branchspec.compact import pack_log_abs
from branchspec.io import atomic_write_npz, atomic_write_text
from branchspec.loading import load_model
from branchspec.models.registry import build_model
from branchspec.checkpoint import CheckpointError
from branchspec.classifier.evaluate import evaluate
from branchspec.losses import soft_target_floor


@torch.no_grad()
def collect_outputs(model, data: ImageSet, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Branch outputs v_k(x_j) on the whole set in eval mode: ``(V (M, N, C), labels (N,))``."""
    model.eval()
    outs, labels = [], []
    for x, y in data.batches(batch_size, augment=False, prefetch=False):
        outs.append(model.branch_outputs(x))  # (M, B, C)
        labels.append(y)
    return torch.cat(outs, dim=1), torch.cat(labels)  # (M, N, C), (N,)



def first_layer_hessian(model, x, y, clamp: bool) -> tuple[dict, list[str]]:
    """Exact first-layer Hessian of ``model`` (eval mode) on the batch ``(x, y)`` with the loss the run was trained
    with, summed (§6), via eq. 13–14 (~M× cheaper than direct): ``{"matrix", "boundaries", "summary"}`` (the block
    summary of ``branchspec.hessian``) and the parameter names."""
    from branchspec import hessian as H
    from branchspec.hessian.factors import blockwise_hessian
    from branchspec.losses import loss_value

    model.eval()
    subset = H.select_params(model, "first-layer")
    mat, _ = blockwise_hessian(model, subset, x, y, partial(loss_value, clamp=clamp, reduction="sum"))
    return ({"matrix": mat, "boundaries": list(subset.boundaries), "summary": H.block_summary(mat, subset.boundaries)},
            list(subset.names))


def first_layer_hessians(model, init_model, data: ImageSet, clamp: bool, samples: int) -> dict:
    """First-layer Hessian at initialisation and at convergence (Fig. 5 panels 3–4) via ``branchspec.hessian``.

    Taken on the first ``samples`` images. The inter-branch blocks are sums of per-image products of
    distributive and collaborative factors (eq. 14) that cancel across images only once the branches
    specialise: on CIFAR-10's shipped model 32 images gave block diagonality 0.44–0.66 by image set, 512 gave
    0.90 (init 0.47–0.48 either way; ``scripts/hessian_samples.py``) — use hundreds of images.

    Optional: when that module is not importable (or its API differs) the
    result says so and carries no matrices.
    """
    if samples <= 0:
        return {"available": False, "note": "skipped (--hessian-samples 0)"}
    x, y = next(iter(data.batches(samples, augment=False, prefetch=False)))
    out = {"available": True, "samples": int(len(y))}
    try:
        for tag, m in (("init", init_model), ("trained", model)):
            out[tag], names = first_layer_hessian(m, x, y, clamp)  # matrix -> analysis.npz
        out["params"] = names
    except BranchspecError as exc:  # e.g. the memory budget: said in the report, not swallowed
        return {"available": False, "note": f"first-layer Hessian not computed: {str(exc).splitlines()[0]}"}
    return out


def train_split_loss(model, state: dict, data: str, clamp: bool, subset: int | None = None) -> dict:
    """§6 loss and accuracy of ``model`` on the whole training split of ``data`` (un-augmented, eval mode), the
    loss's floor H(softmax(±1 targets)) (eq. of §6; 0 for the plain cross-entropy of ``--no-clamp``), and where
    the clamp stops learning on those images: the fractions of logits outside [−1, 1], of dead samples and of
    saturated samples (every logit clamped, so ∂L/∂f = 0, eq. 10: weight decay alone acts on their branches).
    ``subset``: the first N training images only (what a ``--subset`` run trained on)."""
    train = split_for(state, data, train=True)
    train = train.subset(subset) if subset is not None else train
    ev = evaluate(model, train, clamp)
    floor = soft_target_floor(train.num_classes) if clamp else 0.0
    return {"images": len(train), "loss": ev["test_loss"], "accuracy": ev["test_acc"], "loss_floor": floor,
            "above_floor": ev["test_loss"] - floor, "clamped_logits": ev["test_clamped"],
            "dead_samples": ev["test_dead"], "saturated_samples": ev["test_saturated"]}


def analyze(checkpoint, data: str, out_dir, per_class: int = 20, top_fraction: float = 0.07, gallery_max: int = 16,
            pairs: list[tuple[int, int]] | None = None, hessian_samples: int = 256, seed: int = 0,
            train_split: bool = False) -> dict:
    """The full analysis of one checkpoint; returns the dict saved as ``analysis.json``.

    With ``train_split`` it also evaluates the §6 loss and accuracy on the whole training split, un-augmented, in
    eval mode (``res["train_split"]``, with the loss floor H(p)): the converged-or-not number that the running
    training loss of ``metrics.csv`` (augmented images, weights changing during the epoch) only approximates.
    """
    model, state = load_model(checkpoint)
    spec = state["model"]
    if spec.get("kind") != "classifier":
        raise CheckpointError(f"{checkpoint} holds a {spec.get('kind')} model, not a train-classifier checkpoint")
    clamp = bool(spec["config"].get("clamp", True))
    test = test_set_for(state, data)
    m_branches, k_classes = as_branched(model).num_branches, test.num_classes
    for k, c in pairs or ():  # before the outputs are collected: a bad pair costs nothing
        if not (0 <= k < m_branches and 0 <= c < k_classes):
            raise ConfigError("pairs", f"branch {k}, class {c} is out of range: the model has {m_branches} branches "
                                       f"(0-{m_branches - 1}) and {k_classes} classes (0-{k_classes - 1})")
    V, labels = collect_outputs(model, test)  # (M, N, C), (N,)
    M, N, C = V.shape
    K = test.num_classes
    res: dict = {"checkpoint": str(checkpoint), "data": data, "num_branches": M, "num_test": N, "clamp": clamp,
                 "class_names": test.class_names, "step": state.get("step"), "epoch": state.get("epoch")}
    res["accuracy"] = A.accuracy(V, labels, clamp=clamp)
    res.update(A.covariance_summary(V))
    res["class_means"] = A.class_means(V, labels, K).tolist()  # (M, K, C), Fig. 6
    res["confidence_definition"] = "conf_k(x) = v_k(x)[y] - mean_{c != y} v_k(x)[c]"
    sample_idx = A.sample_per_class(labels, per_class, seed)
    conf = A.branch_confidence(V, labels)  # (M, N)
    res["confidence_samples"] = {"indices": sample_idx, "labels": labels[sample_idx].tolist(),
                                 "values": conf[:, sample_idx].tolist()}  # (M, S), Fig. 7
    chosen = pairs if pairs else A.informative_pairs(V, labels, K)
    galleries, images = [], []
    for k, c in chosen:
        idx = A.top_confident(V, labels, k, c, top_fraction)
        galleries.append({"branch": k, "class": c, "indices": idx,
                          "confidence": conf[k, idx].tolist(), "shown": idx[:gallery_max]})
        images.append(test.images_hwc[idx[:gallery_max]])
    res["galleries"] = {"top_fraction": top_fraction, "pairs": galleries}
    res["ablation"] = A.ablation(V, labels, clamp=clamp)
    if train_split:
        res["train_split"] = train_split_loss(model, state, data, clamp)
    init = build_model(spec["kind"], spec["config"])
    res["hessian"] = first_layer_hessians(model, init, test, clamp, hessian_samples)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gallery_arrays = {f"gallery_{i}": np.asarray(im, dtype=np.uint8) for i, im in enumerate(images)}  # (S, H, W, 3)
    hess = res.get("hessian", {})
    hess_arrays = {k: v for tag in ("init", "trained") if isinstance(hess.get(tag), dict) and "matrix" in hess[tag]
                   for k, v in pack_log_abs(hess[tag].pop("matrix"), f"hessian_{tag}").items()}
    # arrays in the NPZ (the first-layer Hessians alone were ~30 MB as JSON), scalars and small lists in the JSON;
    # the Hessians as Fig. 5 draws them (branchspec.compact: 2 x 19 MB in float32, ~2 MB packed), so a shipped
    # model's analysis.npz can be committed and its figures redrawn
    atomic_write_npz(out / "analysis.npz", dict(outputs=V.numpy().astype(np.float32), labels=labels.numpy(),
                                                **gallery_arrays, **hess_arrays))
    atomic_write_text(out / "analysis.json", json.dumps(res))
    return res  # figures: branchspec.figures.classifier.draw_analysis(out_dir), drawn by the caller


def run_sweep(cfg, ms: list[int], out: Path, resume: bool = False, progress: bool = True, log=print,
              procs: int = 1, threads: int | None = None) -> dict:
    """Train one run per M (``out/M<m>/``) and record #active, #silent and accuracy (Figs. 5 panel 1, 17).

    ``cfg`` is a :class:`~branchspec.classifier.train.TrainConfig`; its
    ``num_branches`` and ``out`` are replaced per M. ``resume=True`` skips
    finished runs and continues unfinished ones; ``procs`` > 1 trains the runs
    on that many processes (:mod:`branchspec.classifier.sweep`). Writes
    ``out/sweep.json`` (drawn by ``branchspec.figures.classifier.draw_sweep``) with, per M, #active / #silent
    (Fig. 4 rule; ``silent_centred``: with each branch's mean output removed, :func:`covariance_summary`), the
    epochs trained and the loss and accuracy on the (un-augmented) images it trained on, beside the floor H(p):
    with ``cfg.stop_loss`` every M is trained to the same train-loss criterion, not the same epochs.
    """
    from branchspec.classifier.sweep import train_runs

    out = Path(out)
    cfgs = [replace(cfg, num_branches=m, out=str(out / f"M{m}")) for m in ms]
    train_runs(cfgs, resume=resume, procs=procs, threads=threads, progress=progress, log=log)
    rows = {"M": [], "active": [], "silent": [], "silent_centred": [], "test_acc": [], "covariance": [],
            "class_means": [], "class_names": None,
            "epochs": [], "train_split_loss": [], "train_split_acc": [], "loss_floor": None, "stop_loss": cfg.stop_loss}
    for m in ms:
        model, state = load_model(out / f"M{m}" / "last")
        test = test_set_for(state, cfg.data)
        V, labels = collect_outputs(model, test)
        summ = A.covariance_summary(V)
        rows["M"].append(m)
        rows["active"].append(summ["num_active"])
        rows["silent"].append(summ["num_silent"])
        rows["silent_centred"].append(summ["num_silent_centred"])
        rows["test_acc"].append(A.accuracy(V, labels, clamp=cfg.clamp))
        rows["covariance"].append(summ["covariance"])
        rows["class_means"].append(A.class_means(V, labels, test.num_classes).tolist())
        rows["class_names"] = test.class_names
        fit = train_split_loss(model, state, cfg.data, cfg.clamp, cfg.subset)  # the images the run trained on
        rows["epochs"].append(int(state.get("epoch", 0)))
        rows["train_split_loss"].append(fit["loss"])
        rows["train_split_acc"].append(fit["accuracy"])
        rows["loss_floor"] = fit["loss_floor"]
    atomic_write_text(out / "sweep.json", json.dumps(rows))
    return rows
