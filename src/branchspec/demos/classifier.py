"""Demo part "classifier": §6 on the embedded digits (Figs. 5–8, 16, 17 analogues).

Trains branched slim-ResNet18 classifiers with M ∈ {2, 4, 8, 16} on
scikit-learn's digits (upsampled to 32×32, the CIFAR-10 code path), counts
active / silent branches per M, and analyses the M = 16 model: branch
outputs per class, covariance, confidence, galleries, ablation. The real
CIFAR-10 figures come from the same commands on the CIFAR-10 folder
(docs/classifier.md). Budget: ~2.5 min on 2 CPU cores (width 2 instead of
5.4 to fit it; ``quick`` is a smoke test).
"""

from __future__ import annotations

import json
from pathlib import Path

from branchspec.report import Figure, Section


def run(out_dir: Path, ctx: dict, quick: bool = False) -> Section:
    from branchspec.analysis.classifier_run import analyze, run_sweep
    from branchspec.figures.classifier import draw_analysis, draw_sweep, draw_training
    from branchspec.train.classifier import TrainConfig

    out = Path(out_dir) / "classifier"
    out.mkdir(parents=True, exist_ok=True)
    ms = [2, 4] if quick else [2, 4, 8, 16]
    epochs = 1 if quick else 4
    subset = 128 if quick else 768
    # AdamW: on digits it reaches ~0.89 test accuracy for M = 16 in 4 epochs (SGD at 0.02 needs many more).
    cfg = TrainConfig(data="digits", out=str(out), width=1 if quick else 2, epochs=epochs, batch_size=64,
                      optimizer="adamw", lr=3e-3, engine="packed", subset=subset, seed=0)
    sweep_cmd = (f"branchspec train-classifier --data digits --out {out} --sweep {','.join(map(str, ms))} "
                 f"--width {cfg.width:g} --epochs {epochs} --batch-size 64 --optimizer adamw --lr 0.003 "
                 f"--engine packed --subset {subset}")
    sweep = run_sweep(cfg, ms, out, resume=True, progress=True)
    draw_sweep(out / "sweep.json", out / "sweep.png")
    m = ms[-1]
    run_dir = out / f"M{m}"
    ana = out / "analysis"
    res = analyze(run_dir / "last.json", "digits", ana, per_class=5 if quick else 20,
                  hessian_samples=0 if quick else 16)
    draw_analysis(ana)
    draw_training(run_dir / "metrics.csv", out / "training.png")
    ctx["classifier_checkpoint"] = str(run_dir / "last.json")
    rel = lambda p: str(Path("classifier") / Path(p).relative_to(out))  # noqa: E731
    an_cmd = f"branchspec analyze-classifier --checkpoint {run_dir / 'last.json'} --data digits --out {ana}"
    figs = [
        Figure(rel(out / "sweep.png"), "Active and silent branches vs M (log scale) and each M's inter-branch "
               "covariance — paper Fig. 5 panel 1 and Fig. 17, on digits.", sweep_cmd),
        Figure(rel(ana / "fig6_class_means.png"), f"Each branch's mean output per class, M = {m} (paper Fig. 6).", an_cmd),
        Figure(rel(ana / "fig5_covariance.png"), "Inter-branch covariance F·Fᵀ and branch norms with the active "
               "threshold (paper Fig. 5 panel 2).", an_cmd),
        Figure(rel(ana / "fig7_confidence.png"), "Per-sample branch confidence v_k[y] − mean_{c≠y} v_k[c] on random "
               "test samples of every class (paper Fig. 7).", an_cmd),
        Figure(rel(ana / "fig8_galleries.png"), "Most confident test images of the most informative "
               "(branch, class) pairs — intra-class specialisation (paper Figs. 8, 16).", an_cmd),
        Figure(rel(ana / "ablation.png"), "Accuracy with each branch silenced, and with all but the top-k "
               "branches silenced (beyond the paper).", an_cmd),
        Figure(rel(out / "training.png"), f"Training curve of the M = {m} model.", sweep_cmd),
    ]
    if (ana / "fig5_hessian.png").exists():
        figs.append(Figure(rel(ana / "fig5_hessian.png"), "First-layer Hessian at initialisation and after training "
                           "(paper Fig. 5 panels 3–4).", an_cmd))
    ab = res["ablation"]
    numbers = {
        f"test accuracy, M = {m} (digits, {subset} training images, {epochs} epochs)": round(res["accuracy"], 4),
        f"active / silent branches, M = {m}": f"{res['num_active']} / {res['num_silent']}",
        "active per M": json.dumps(dict(zip(map(str, sweep["M"]), sweep["active"]))),
        "test accuracy per M": json.dumps({str(k): round(v, 3) for k, v in zip(sweep["M"], sweep["test_acc"])}),
        "mean |correlation| between branches": round(res["mean_abs_offdiag_correlation"], 3),
        "accuracy with only the top-1 / top-2 branches": f"{ab['keep_top'].get(1, float('nan')):.3f} / "
                                                           f"{ab['keep_top'].get(2, float('nan')):.3f}",
    }
    notes = [
        "Branch = slim CIFAR ResNet18 (3×3 stem, 4 stages × 2 BasicBlocks, strides 1,2,2,2); the demo uses width "
        f"{cfg.width:g} to fit its time budget (the paper's 0.08 M-parameter branch is width 5.4, the default).",
        "Loss: cross-entropy between softmax(±1 class vector) and softmax(clamp(Σ_k v_k, −1, 1)) (§6, eq. 3).",
        "Active branch: ‖F_k‖ ≥ 0.1·max_j ‖F_j‖ over the test set (Fig. 4 definition).",
        f"Hessian: {res['hessian'].get('note', 'computed with branchspec.hessian')}",
    ]
    return Section(key="classifier", title="Branched classifier (§6)",
                   intro="M slim ResNet18 branches summed and trained as one classifier specialise: some branches "
                         "become experts on a few classes, others fall silent (paper §6).",
                   numbers=numbers, figures=figs, notes=notes)
