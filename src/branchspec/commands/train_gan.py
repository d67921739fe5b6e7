"""``branchspec train-gan``: train the branched class-transfer GAN (paper §7, App. E)."""

from __future__ import annotations

import os

from branchspec.commands._common import (
    MAX_BRANCHES, MAX_IMG_SIZE, at_least, at_most, engine_precision_arguments, writable_dir,
)
from branchspec.errors import UsageError
from branchspec.models.generator import INITS
from branchspec.models.layers import PADDINGS
from branchspec.train.gan_config import PRECISIONS

NAME = "train-gan"
HELP = "train the branched class-transfer GAN whose branch outputs decompose images (§7)"
DESCRIPTION = (
    "Train f(x, y) = R(x) + sum_k v_k(x, y): M slim StarGAN-v2 generator branches, a multi-task "
    "discriminator, non-saturating adversarial loss + R1 only (paper §7, App. E). Writes RUN/config.json, "
    "RUN/log.jsonl, RUN/samples/*.png (input | re-generation | R) and RUN/checkpoints/{last,step-N} "
    "(safetensors; model.* = EMA generator). Runs under torchrun (DistributedDataParallel; "
    "--batch-size is per process)."
)


def add_arguments(p) -> None:
    p.add_argument("--data", default="embedded",
                   help="ROOT with ROOT/train/<domain>/*.jpg|*.png (AFHQ / CelebA-HQ layout), a CIFAR-10 python "
                        "folder (optionally FOLDER:cat,dog), or 'embedded' (scikit-image photographs; default)")
    p.add_argument("--img-size", type=int, default=32, help="image side, power of two (paper 256; CPU 32-64; default 32)")
    p.add_argument("--branches", type=int, default=9, help="number of branches M (default 9)")
    p.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    p.add_argument("--out", required=True, help="run folder RUN")
    p.add_argument("--batch-size", type=int, default=8, help="images per step per process (default 8)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    p.add_argument("--d-lr", type=float, default=None,
                   help="discriminator Adam learning rate (default: --lr; not the paper's: a two-time-scale departure)")
    p.add_argument("--r1", type=float, default=1.0, help="weight of the R1 penalty (default 1)")
    p.add_argument("--r1-every", type=int, default=1,
                   help="lazy R1 (StyleGAN2): the penalty, scaled by N, on every N-th step only (default 1: every step)")
    p.add_argument("--padding", choices=list(PADDINGS), default="reflect",
                   help="padding of G's 3x3 convolutions: reflect (default; no border frame in the components) or "
                        "zeros (StarGAN-v2; generators trained before 2026-12-05)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile G's training forward (compiles for about a minute; pays with --padding zeros)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the sampled generator (default 0.999)")
    p.add_argument("--residual", choices=["gaussian", "diffusion", "none"], default="gaussian",
                   help="R: Gaussian smoothing or the learnt nonlinear diffusion of App. E (default gaussian)")
    p.add_argument("--sigma", type=float, default=None, help="Gaussian sigma in pixels (default max(1, img_size/32))")
    p.add_argument("--base-width", type=int, default=32, help="generator branch base width (default 32)")
    p.add_argument("--max-width", type=int, default=128, help="generator branch widest layer (default 128)")
    p.add_argument("--num-down", type=int, default=None,
                   help="generator down-sampling blocks, 1..log2(img-size)-1 (default: bottleneck at 16x16 as "
                        "StarGAN-v2, i.e. max(1, log2(img-size)-4))")
    engine_precision_arguments(
        p, PRECISIONS, "branch engine of branchspec.Branched (default packed; auto: timed once, not exact on resume)",
        "auto (bf16 on CUDA and on CPUs with native bf16, AVX512-BF16/AMX; fp32 otherwise), fp32, or bf16 autocast "
        "with fp32 weights, optimiser state and losses (default auto; --resume keeps the run's)")
    p.add_argument("--init", choices=list(INITS), default="he",
                   help="initialisation of G's branches and D: StarGAN-v2's he_init (default) or torch's defaults")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    p.add_argument("--holdout", type=int, default=0,
                   help="hold the last N images of every domain out of training (listed in the checkpoint; default 0)")
    p.add_argument("--same-domain", type=float, default=0.0,
                   help="probability that the target domain is the image's own (default 0: uniform target, "
                        "class transfer as in the paper; 1: re-generation only)")
    p.add_argument("--cls-weight", type=float, default=0.0,
                   help="weight of an AC-GAN domain classifier in D that G's outputs must satisfy (default 0: the "
                        "paper's adversarial-only loss; a departure, docs/gan.md)")
    p.add_argument("--rec-weight", type=float, default=0.0,
                   help="weight of an L1 loss between G(x, y) and x on own-domain samples (default 0: the paper; "
                        "a departure, docs/gan.md)")
    p.add_argument("--source-aware", action="store_true",
                   help="G's style from (source, target) domain pairs, so it knows re-generation from transfer "
                        "(default: from the target alone, the paper; a departure, docs/gan.md)")
    p.add_argument("--resume", action="store_true", help="continue RUN/checkpoints/last exactly")
    p.add_argument("--sample-every", type=int, default=500, help="sample grid every N steps (0: at the end)")
    p.add_argument("--ckpt-every", type=int, default=1000, help="checkpoint every N steps (0: at the end)")
    p.add_argument("--keep-last", type=int, default=0,
                   help="keep only the newest N step checkpoints (checkpoints/last is always kept; default 0: all)")
    p.add_argument("--amp", action="store_true", help="same as --precision bf16 (kept for old scripts)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="device (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from branchspec.experiments import gan
    from branchspec.train.gan import GanTrainConfig
    from branchspec.train.gan_config import saved_precision

    at_least(args.img_size, 8, "--img-size")
    at_most(args.img_size, MAX_IMG_SIZE, "--img-size")
    if args.img_size & (args.img_size - 1):
        raise UsageError(f"--img-size must be a power of two, got {args.img_size}")
    at_least(args.branches, 1, "--branches")
    at_most(args.branches, MAX_BRANCHES, "--branches")
    for arg, v in (("--base-width", args.base_width), ("--max-width", args.max_width)):
        at_least(v, 1, arg)
        at_most(v, 4096, arg)
    at_least(args.steps, 1, "--steps")
    at_least(args.batch_size, 1, "--batch-size")
    at_least(args.sample_every, 0, "--sample-every")
    at_least(args.ckpt_every, 0, "--ckpt-every")
    at_least(args.holdout, 0, "--holdout")
    at_least(args.keep_last, 0, "--keep-last")
    if args.lr <= 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    if args.d_lr is not None and args.d_lr <= 0:
        raise UsageError(f"--d-lr must be > 0, got {args.d_lr}")
    if args.num_down is not None and not 1 <= args.num_down <= args.img_size.bit_length() - 2:
        raise UsageError(f"--num-down must be in 1..{args.img_size.bit_length() - 2} for --img-size {args.img_size}, "
                         f"got {args.num_down}")
    if args.r1 < 0:
        raise UsageError(f"--r1 must be >= 0, got {args.r1}")
    if not 0 <= args.ema < 1:
        raise UsageError(f"--ema must be in [0, 1), got {args.ema}")
    if not 0 <= args.same_domain <= 1:
        raise UsageError(f"--same-domain must be in [0, 1], got {args.same_domain}")
    for arg, v in (("--cls-weight", args.cls_weight), ("--rec-weight", args.rec_weight)):
        if not v >= 0:
            raise UsageError(f"{arg} must be >= 0, got {v}")
    if args.sigma is not None and args.sigma <= 0:
        raise UsageError(f"--sigma must be > 0, got {args.sigma}")
    if args.data != "embedded" and not os.path.exists(args.data.partition(":")[0] if not os.path.exists(args.data) else args.data):
        raise UsageError(f"--data: no such folder: {args.data}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device available")
    out = writable_dir(args.out, "--out")
    from branchspec.train.checkpoint import checkpoint_exists

    if args.resume and not checkpoint_exists(out / "checkpoints" / "last"):
        raise UsageError(f"--resume: no checkpoint {out / 'checkpoints' / 'last.json'}")
    if args.threads is not None:
        torch.set_num_threads(at_least(args.threads, 1, "--threads"))
    elif args.resume:
        from branchspec.train.checkpoint import restore_runtime

        restore_runtime(out / "checkpoints" / "last")  # the thread count the run was saved with: exact resume
    if args.amp and args.precision not in (None, "bf16"):
        raise UsageError(f"--amp means --precision bf16, but --precision {args.precision} was given")
    precision = "bf16" if args.amp else args.precision
    if precision is None:  # a resumed run keeps the precision it was trained with
        precision = saved_precision(out / "checkpoints" / "last") if args.resume else "auto"
    try:
        cfg = GanTrainConfig(
            data=args.data, img_size=args.img_size, num_branches=args.branches, steps=args.steps,
            batch_size=args.batch_size, lr=args.lr, d_lr=args.d_lr, r1=args.r1, ema=args.ema, residual=args.residual,
            sigma=args.sigma, base_width=args.base_width, max_width=args.max_width, engine=args.engine,
            seed=args.seed, sample_every=args.sample_every, ckpt_every=args.ckpt_every, precision=precision,
            device=args.device, holdout=args.holdout, same_domain=args.same_domain, keep_last=args.keep_last,
            init=args.init, num_down=args.num_down, cls_weight=args.cls_weight, rec_weight=args.rec_weight,
            source_aware=args.source_aware, r1_every=at_least(args.r1_every, 1, "--r1-every"), padding=args.padding,
            compile=args.compile,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    res = gan.run(gan.Config(train=cfg, resume=args.resume, progress=not args.no_progress), out)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"train-gan: checkpoint {res['train']['checkpoint']}")
    return 0
