"""``branchspec export``: a weights-only copy of a checkpoint (to ship a trained model)."""

from __future__ import annotations

from pathlib import Path

from branchspec import options
from branchspec.commands._common import flag_errors, writable_dir
from branchspec.checkpoint import checkpoint_paths
from branchspec.train.export import export_weights, refuse_same_unit

NAME = "export"
HELP = "write a weights-only copy of a checkpoint (no optimiser state), e.g. to ship a trained model"
DESCRIPTION = (
    "Copy the model weights (model.*) and the model spec, data statistics, metrics and run config of "
    "CHECKPOINT to OUT (one .safetensors with its state in the header, plus a readable OUT.json). The copy "
    "loads with branchspec.loading.load_model, analyze-classifier, hessian and decompose like the original, "
    "and cannot be resumed. Pass RUN/ema to ship a classifier's EMA weights."
)


def add_arguments(p):  # no config: export_weights(src, dst) takes the two paths alone
    g = p.add_argument_group(options.NOT_CONFIG)
    g.add_argument("--checkpoint", required=True, help="checkpoint to copy (RUN/last, RUN/ema, …)")
    g.add_argument("--out", required=True, help="new checkpoint name, e.g. checkpoints/cifar10-m16/last")


FLAGS = {"src": "--checkpoint", "dst": "--out"}  # export_weights(src, dst)


def run(args) -> int:
    with flag_errors(FLAGS):
        refuse_same_unit(args.checkpoint, args.out)  # before anything is created
    writable_dir(str(Path(args.out).parent))
    with flag_errors(FLAGS):
        export_weights(args.checkpoint, args.out)
    weights, _ = checkpoint_paths(args.out)
    print(f"export: {weights} ({weights.stat().st_size / 1e6:.1f} MB, weights only)")
    return 0
