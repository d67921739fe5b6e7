"""``branchspec train-classifier``: train the branched CIFAR-10 classifier of §6."""

from __future__ import annotations

from pathlib import Path

import torch

from branchspec.branched import ENGINES
from branchspec.commands._common import (
    MAX_BRANCHES, at_least, at_most, existing_dir, finite, int_range, writable_dir,
)
from branchspec.errors import UsageError

MAX_WIDTH = 256  # branch base width: the default is 5.4, a ResNet18 is 64

NAME = "train-classifier"
HELP = "train M summed slim-ResNet18 branches on CIFAR-10 (or the embedded digits), paper §6"
DESCRIPTION = (
    "Train f = clamp(Σ_k v_k(x), -1, 1) with the cross-entropy against softmax of the ±1 class vector (§6). "
    "Writes RUN/config.json, RUN/metrics.csv (one row per epoch) and the checkpoint RUN/last.{json,safetensors} "
    "(every epoch); --resume continues exactly. With --sweep the runs for several M go to RUN/M<m>/ and "
    "RUN/sweep.json + RUN/sweep.png give #active and #silent branches vs M (Figs. 5 panel 1, 17)."
)


def add_arguments(p):
    p.add_argument("--data", required=True, help="a cifar-10-batches-py folder, or 'digits' (embedded in scikit-learn)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--branches", type=int, default=16, help="M, number of branches (default 16)")
    p.add_argument("--epochs", type=int, default=60, help="epochs of the schedule (default 60)")
    p.add_argument("--width", type=float, default=None, help="branch base width (default 5.4: ≈0.08 M parameters per branch)")
    p.add_argument("--subset", type=int, default=None, help="train on the first N training images")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd", help="default sgd (momentum 0.9, Nesterov)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.02 sgd / 2e-3 adamw)")
    p.add_argument("--weight-decay", type=float, default=None, help="default 5e-4 sgd / 0.05 adamw")
    p.add_argument("--schedule", choices=["cosine", "onecycle", "constant"], default="cosine", help="default cosine (1 warm-up epoch)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--engine", choices=list(ENGINES), default="auto", help="Branched engine (default auto: fastest measured)")
    p.add_argument("--no-clamp", action="store_true", help="plain one-hot cross-entropy on unclamped logits (comparison)")
    p.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation, data order and augmentation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue RUN/last exactly where it stopped")
    p.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps in total")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps (default: at epoch ends)")
    p.add_argument("--sweep", default=None, help="train one run per M, e.g. 2,4,8,16,32 (overrides --branches)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from branchspec.models.resnet import DEFAULT_WIDTH
    from branchspec.train.checkpoint import restore_runtime
    from branchspec.train.classifier import TrainConfig, train

    if args.data != "digits":
        existing_dir(args.data, "--data")
    at_least(args.branches, 1, "--branches")
    at_most(args.branches, MAX_BRANCHES, "--branches")
    at_least(args.epochs, 1, "--epochs")
    at_least(args.batch_size, 1, "--batch-size")
    if args.subset is not None:
        at_least(args.subset, 1, "--subset")
    if args.lr is not None:
        finite(args.lr, "--lr", 0, open_lo=True)
    if args.width is not None:
        finite(args.width, "--width", 1, MAX_WIDTH)
    if args.weight_decay is not None:
        finite(args.weight_decay, "--weight-decay", 0)
    if args.max_steps is not None:
        at_least(args.max_steps, 1, "--max-steps")
    at_least(args.save_every, 0, "--save-every")
    out = writable_dir(args.out)
    if args.threads is not None:
        torch.set_num_threads(at_least(args.threads, 1, "--threads"))
    elif args.resume and not args.sweep:
        restore_runtime(Path(out) / "last")  # the thread count the run was saved with: exact resume
    base = dict(
        data=args.data, out=str(out), num_branches=args.branches, width=args.width or DEFAULT_WIDTH,
        clamp=not args.no_clamp, engine=args.engine, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
        augment=not args.no_augment, subset=args.subset, seed=args.seed, save_every=args.save_every,
    )
    if args.sweep:
        from branchspec.analysis.classifier_run import run_sweep

        ms = int_range(args.sweep, "--sweep", MAX_BRANCHES)
        if ms[0] < 1:
            raise UsageError("--sweep: M must be >= 1")
        cfg = TrainConfig(**base)
        res = run_sweep(cfg, ms, Path(out), resume=args.resume, progress=not args.quiet)
        print(f"sweep: {Path(out) / 'sweep.json'}  active {res['active']} silent {res['silent']} for M {res['M']}")
        return 0
    cfg = TrainConfig(**base)
    summary = train(cfg, resume=args.resume, max_steps=args.max_steps, progress=not args.quiet)
    state = "stopped at step {}".format(summary["step"]) if summary.get("stopped_early") else "done"
    print(f"{state}: checkpoint {Path(out) / 'last.json'}, test accuracy {summary.get('test_acc', 'n/a')}")
    return 0
