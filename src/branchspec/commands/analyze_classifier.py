"""``branchspec analyze-classifier``: specialisation analysis of a trained classifier (§6)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from branchspec.commands._common import (
    add_config_arguments, at_least, config_from_args, existing_dir, flag_errors, writable_dir,
)
from branchspec.errors import UsageError

NAME = "analyze-classifier"
HELP = "branch outputs per class, covariance, active/silent, confidence, galleries, ablation (Figs. 5-8, 16)"
DESCRIPTION = (
    "Evaluate a checkpoint of 'branchspec train-classifier' on the test split of --data and write "
    "OUT/analysis.json (accuracy, active_branches, silent_branches, covariance, ablation, class_means, "
    "confidence, galleries, hessian), OUT/analysis.npz (branch outputs (M, N, 10), labels, gallery images, the "
    "first-layer Hessians as Fig. 5 draws them) and the figures. Confidence of branch k on x of class y: "
    "v_k(x)[y] - mean over c != y of v_k(x)[c]."
)


def add_arguments(p):
    from branchspec.experiments.classifier import Analysis

    g = add_config_arguments(p, Analysis)  # one flag per field of experiments.classifier.Analysis, and --out
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args) -> int:
    from branchspec.experiments import classifier
    from branchspec.checkpoint import checkpoint_exists, checkpoint_paths

    analysis, flags = config_from_args(args, classifier.Analysis, folder="")
    _, state_path = checkpoint_paths(analysis.checkpoint)
    if not checkpoint_exists(state_path):
        raise UsageError(f"{flags['checkpoint']}: no such checkpoint: {state_path}")
    if analysis.data != "digits":
        existing_dir(analysis.data, flags["data"])
    if args.threads is not None:
        torch.set_num_threads(at_least(args.threads, 1, "--threads"))
    out = writable_dir(args.out)
    analysis = replace(analysis, checkpoint=str(state_path))
    with flag_errors(flags):  # a pair outside the model's branches / classes names the flag
        res = classifier.run(classifier.Config(analysis=analysis), out)["analysis"]
    print(f"accuracy {res['accuracy']:.4f}; {res['num_active']} active, {res['num_silent']} silent branches "
          f"({res['num_silent_centred']} with their mean output removed); {Path(out) / 'analysis.json'}")
    if "train_split" in res:
        t = res["train_split"]
        print(f"training split ({t['images']} images, un-augmented): loss {t['loss']:.4f} "
              f"({t['above_floor']:+.4f} from the floor {t['loss_floor']:.4f}), accuracy {t['accuracy']:.4f}; "
              f"logits clamped {t['clamped_logits']:.3f}, samples dead {t['dead_samples']:.3f}, "
              f"saturated {t['saturated_samples']:.3f}")
    return 0
