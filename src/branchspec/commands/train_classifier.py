"""``branchspec train-classifier``: train the branched CIFAR-10 classifier of §6."""

from __future__ import annotations

from pathlib import Path

import torch

from branchspec.commands._common import (
    MAX_BRANCHES, MAX_IMG_SIZE, at_least, at_most, engine_precision_arguments, existing_dir, finite, int_range, writable_dir,
)
from branchspec.errors import UsageError
from branchspec.train.classifier import PRECISIONS, WD_MODES
from branchspec.train.classifier_dist import DEVICES
from branchspec.train.classifier_recipe import FLIPS, SCHEDULES
from branchspec.train.losses import CLAMP_GRADS

MAX_WIDTH = 256  # branch base width: the default is 5.4, a ResNet18 is 64

NAME = "train-classifier"
HELP = "train M summed slim-ResNet18 branches on CIFAR-10 (or the embedded digits), paper §6"
DESCRIPTION = (
    "Train f = clamp(Σ_k v_k(x), -1, 1) with the cross-entropy against softmax of the ±1 class vector (§6). "
    "Writes RUN/config.json, RUN/metrics.csv (one row per epoch) and the checkpoint RUN/last.{json,safetensors} "
    "(every epoch); --resume continues exactly. With --sweep the runs for several M go to RUN/M<m>/ and "
    "RUN/sweep.json + RUN/sweep.png give #active and #silent branches vs M (Figs. 5 panel 1, 17). "
    "Runs under torchrun (DistributedDataParallel; --batch-size is the global batch, split over the processes)."
)


def add_arguments(p):
    p.add_argument("--data", required=True,
                   help="a cifar-10-batches-py folder, an image-folder ROOT with ROOT/train/<class>/ and ROOT/val/<class>/ "
                        "(AFHQ / ImageFolder layout; unreadable images skipped and counted), or 'digits' (scikit-learn)")
    p.add_argument("--img-size", type=int, default=32,
                   help="image side for image-folder data: centre square crop, resized (default 32)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--branches", type=int, default=16, help="M, number of branches (default 16)")
    p.add_argument("--epochs", type=int, default=60, help="epochs of the schedule (default 60)")
    p.add_argument("--width", type=float, default=None, help="branch base width (default 5.4: ≈0.08 M parameters per branch)")
    p.add_argument("--subset", type=int, default=None, help="train on the first N training images")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd", help="default sgd (momentum 0.9, Nesterov)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.02 sgd / 2e-3 adamw)")
    p.add_argument("--weight-decay", type=float, default=None, help="default 5e-4 sgd / 0.05 adamw")
    p.add_argument("--weight-decay-mode", choices=list(WD_MODES), default="coupled",
                   help="coupled: torch's weight_decay (default); decoupled: θ ← θ(1 − wd·lr/peak lr) each step, "
                        "so --lr and --weight-decay are independent (default wd then 1e-4)")
    p.add_argument("--schedule", choices=list(SCHEDULES), default="cosine",
                   help="cosine / linear (to 0) after a linear warm-up, onecycle, constant, or flat (warm-up, then "
                        "constant) (default cosine)")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up length in epochs (default 1)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    engine_precision_arguments(
        p, PRECISIONS, "Branched engine (default packed; auto: timed once, not exact on resume)",
        "auto (default: bf16 on CUDA and on CPUs with native bf16, AVX512-BF16/AMX; fp32 otherwise), fp32, or bf16 "
        "autocast of the forward pass (weights, optimiser and loss stay fp32); --resume keeps the run's precision")
    p.add_argument("--device", choices=list(DEVICES), default="cpu",
                   help="cpu (default), cuda or auto; under torchrun: gloo on CPU, nccl on CUDA (one GPU per LOCAL_RANK)")
    p.add_argument("--no-clamp", action="store_true", help="plain one-hot cross-entropy on unclamped logits (comparison)")
    p.add_argument("--clamp-grad", choices=list(CLAMP_GRADS), default="hard",
                   help="gradient of the §6 clamp: hard (the paper, default) or pass-inward (same loss value; a clamped "
                        "logit gets its gradient when descent moves it back into [-1, 1]) — not the paper's training")
    p.add_argument("--init-from", default=None, metavar="CKPT",
                   help="start from the model weights of this checkpoint (e.g. a shipped, weights-only one; same M "
                        "and width) with a fresh optimiser, schedule and EMA: fine-tuning")
    p.add_argument("--head-init-scale", type=float, default=None, help="scale of each branch head's initial weights (default 1/sqrt(M))")
    p.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    p.add_argument("--flip", choices=list(FLIPS), default="random",
                   help="horizontal flips: random (default), alternate (each image flipped every other epoch, airbench) or none")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights, e.g. 0.99 (0: off); writes RUN/ema and ema_test_acc")
    p.add_argument("--tta", action="store_true", help="also report flip test-time-augmented accuracy (tta_test_acc)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation, data order and augmentation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue RUN/last exactly where it stopped")
    p.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps in total")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps (default: at epoch ends)")
    p.add_argument("--stop-loss", type=float, default=None, metavar="DELTA",
                   help="stop after the first epoch whose train loss is within DELTA of the floor H(p), e.g. 0.05; "
                        "--epochs is then the most (pair it with --schedule flat, whose lr does not depend on "
                        "where the run stops): every M of a --sweep trained to the same criterion")
    p.add_argument("--sweep", default=None, help="train one run per M, e.g. 2,4,8,16,32 (overrides --branches)")
    p.add_argument("--sweep-procs", type=int, default=1,
                   help="train the sweep's runs on this many processes, largest M first (default 1); on CUDA "
                        "process i uses GPU i mod n_gpus; with --threads each process uses that many threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from branchspec.models.resnet import DEFAULT_WIDTH
    from branchspec.train.checkpoint import checkpoint_exists, checkpoint_paths, restore_runtime
    from branchspec.train.classifier import TrainConfig

    if args.data != "digits":
        existing_dir(args.data, "--data")
    at_least(args.branches, 1, "--branches")
    at_most(args.branches, MAX_BRANCHES, "--branches")
    at_least(args.epochs, 1, "--epochs")
    at_least(args.batch_size, 1, "--batch-size")
    if args.subset is not None:
        at_least(args.subset, 1, "--subset")
    at_least(args.img_size, 8, "--img-size")
    at_most(args.img_size, MAX_IMG_SIZE, "--img-size")
    if args.lr is not None:
        finite(args.lr, "--lr", 0, open_lo=True)
    if args.width is not None:
        finite(args.width, "--width", 1, MAX_WIDTH)
    if args.weight_decay is not None:
        finite(args.weight_decay, "--weight-decay", 0)
    if args.max_steps is not None:
        at_least(args.max_steps, 1, "--max-steps")
    at_least(args.save_every, 0, "--save-every")
    if args.stop_loss is not None:
        finite(args.stop_loss, "--stop-loss", 0, open_lo=True)
    if args.head_init_scale is not None and not args.head_init_scale >= 0:
        raise UsageError(f"--head-init-scale must be >= 0, got {args.head_init_scale}")
    if args.init_from is not None:
        # read only when the run starts: a resumed run has the weights in its own checkpoint (the source may move)
        if not args.resume and not checkpoint_exists(checkpoint_paths(args.init_from)[1]):
            raise UsageError(f"--init-from: no such checkpoint: {args.init_from}")
        if args.sweep:
            raise UsageError("--init-from: one model's weights cannot start a sweep over M; drop --sweep")
    if not 0.0 <= args.ema < 1.0:
        raise UsageError(f"--ema must lie in [0, 1), got {args.ema}")
    if not args.warmup_epochs >= 0:
        raise UsageError(f"--warmup-epochs must be >= 0, got {args.warmup_epochs}")
    if args.no_clamp and args.clamp_grad != "hard":
        raise UsageError("--clamp-grad applies to the clamped loss; drop it or --no-clamp")
    out = writable_dir(args.out)
    if args.threads is not None:
        torch.set_num_threads(at_least(args.threads, 1, "--threads"))
    elif args.resume and not args.sweep:
        restore_runtime(Path(out) / "last")  # the thread count the run was saved with: exact resume
    precision = args.precision
    if precision is None:
        precision = _saved_precision(Path(out)) if args.resume else "auto"
    base = dict(
        data=args.data, out=str(out), num_branches=args.branches, width=args.width or DEFAULT_WIDTH,
        clamp=not args.no_clamp, engine=args.engine, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
        augment=not args.no_augment, subset=args.subset, img_size=args.img_size, seed=args.seed, save_every=args.save_every,
        warmup_epochs=args.warmup_epochs, weight_decay_mode=args.weight_decay_mode, flip=args.flip, ema=args.ema,
        tta=args.tta, head_init_scale=args.head_init_scale, clamp_grad=args.clamp_grad, precision=precision,
        device=args.device, init_from=args.init_from, stop_loss=args.stop_loss,
    )
    from branchspec.experiments import classifier

    ms = ()
    if args.sweep:
        ms = tuple(int_range(args.sweep, "--sweep", MAX_BRANCHES))
        if ms[0] < 1:
            raise UsageError("--sweep: M must be >= 1")
    cfg = classifier.Config(train=TrainConfig(**base), sweep=ms, resume=args.resume, max_steps=args.max_steps,
                            progress=not args.quiet, sweep_procs=at_least(args.sweep_procs, 1, "--sweep-procs"),
                            sweep_threads=args.threads)
    res = classifier.run(cfg, out)
    if ms:
        sw = res["sweep"]
        print(f"sweep: {Path(out) / 'sweep.json'}  active {sw['active']} silent {sw['silent']} for M {sw['M']}")
        return 0
    summary = res["train"]
    state = "stopped at step {}".format(summary["step"]) if summary.get("stopped_early") else "done"
    state += f" (train loss within {args.stop_loss} of the floor)" if summary.get("loss_reached") else ""
    print(f"{state}: checkpoint {Path(out) / 'last.json'}, test accuracy {summary.get('test_acc', 'n/a')}")
    return 0


def _saved_precision(out: Path) -> str:
    """The precision a run folder was started with (config.json), fp32 if none is recorded."""
    import json

    cfg = out / "config.json"
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text()).get("precision", "fp32")
        except ValueError:
            raise UsageError(f"--resume: {cfg} is not valid JSON") from None
    return "fp32"
