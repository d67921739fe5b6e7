"""``branchspec analyze-classifier``: specialisation analysis of a trained classifier (§6)."""

from __future__ import annotations

from pathlib import Path

import torch

from branchspec.commands._common import existing_dir, flag_errors, writable_dir
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
    p.add_argument("--checkpoint", required=True, help="RUN/last.json (or RUN/last) of train-classifier")
    p.add_argument("--data", required=True, help="the cifar-10-batches-py folder of the run, or 'digits'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--per-class", type=int, default=20, help="random test samples per class in Fig. 7 (default 20)")
    p.add_argument("--top", type=float, default=7.0, help="gallery: top PERCENT most confident images (default 7, Fig. 16)")
    p.add_argument("--pairs", default=None, help="gallery (branch:class) pairs, e.g. 10:7,14:7 (default: 2 most informative branches x their 2 top classes)")
    p.add_argument("--hessian-samples", type=int, default=256,
                   help="test images for the first-layer Hessian (0: skip; default 256: on 32 images the inter-branch "
                        "blocks of a trained model do not yet cancel and its block diagonality is noise-dominated)")
    p.add_argument("--train-split", action="store_true",
                   help="also the §6 loss and accuracy on the whole training split, un-augmented, against the loss "
                        "floor (analysis.json 'train_split'; minutes on a CPU for CIFAR-10)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _pairs(text: str | None):
    if not text:
        return None
    out = []
    for part in text.split(","):
        try:
            k, c = part.split(":")
            out.append((int(k), int(c)))
        except ValueError:
            raise UsageError(f"--pairs: malformed pair {part!r} (use BRANCH:CLASS, e.g. 10:7)") from None
    return tuple(out)


def run(args) -> int:
    from branchspec.experiments import classifier
    from branchspec.checkpoint import checkpoint_exists, checkpoint_paths

    _, state_path = checkpoint_paths(args.checkpoint)
    if not checkpoint_exists(state_path):
        raise UsageError(f"--checkpoint: no such checkpoint: {state_path}")
    if args.data != "digits":
        existing_dir(args.data, "--data")
    if args.per_class < 1:
        raise UsageError(f"--per-class must be >= 1, got {args.per_class}")
    if not 0 < args.top <= 100:
        raise UsageError(f"--top must be a percentage in (0, 100], got {args.top}")
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    out = writable_dir(args.out)
    analysis = classifier.Analysis(checkpoint=str(state_path), data=args.data, per_class=args.per_class, top=args.top,
                                   pairs=_pairs(args.pairs), hessian_samples=args.hessian_samples, folder="",
                                   train_split=args.train_split)
    with flag_errors({"pairs": "--pairs"}):  # a pair outside the model's branches / classes names the flag
        res = classifier.run(classifier.Config(analysis=analysis), out)["analysis"]
    print(f"accuracy {res['accuracy']:.4f}; {res['num_active']} active, {res['num_silent']} silent branches; "
          f"{Path(out) / 'analysis.json'}")
    if "train_split" in res:
        t = res["train_split"]
        print(f"training split ({t['images']} images, un-augmented): loss {t['loss']:.4f} "
              f"({t['above_floor']:+.4f} from the floor {t['loss_floor']:.4f}), accuracy {t['accuracy']:.4f}; "
              f"logits clamped {t['clamped_logits']:.3f}, samples dead {t['dead_samples']:.3f}, "
              f"saturated {t['saturated_samples']:.3f}")
    return 0
