"""``branchspec train-gan``: train the branched class-transfer GAN (paper §7, App. E)."""

from __future__ import annotations

import os
from pathlib import Path

from branchspec import options
from branchspec.commands._common import (
    MAX_BRANCHES, MAX_IMG_SIZE, at_least, at_most, flag_errors, warn_emulated_bf16, writable_dir,
)
from branchspec.errors import UsageError
from branchspec.gan.config import GanTrainConfig

NAME = "train-gan"
HELP = "train the branched class-transfer GAN whose branch outputs decompose images (§7)"
DESCRIPTION = (
    "Train f(x, y) = R(x) + sum_k v_k(x, y): M slim StarGAN-v2 generator branches, a multi-task "
    "discriminator, non-saturating adversarial loss + R1 only (paper §7, App. E). Writes RUN/config.json, "
    "RUN/log.jsonl, RUN/samples/*.png (input | re-generation | R) and RUN/checkpoints/{last,step-N} "
    "(safetensors; model.* = EMA generator). Runs under torchrun (DistributedDataParallel; "
    "--batch-size is per process). Every option but the run-control ones is a field of GanTrainConfig "
    "(branchspec.gan.config); --config recipes/NAME.toml sets them from a file (the recipes behind the "
    "published results), the departures from the paper's objective have a group of their own."
)


# config field (or library parameter) -> its flag, to name it in an error; any other field the library names
# (resume, threads, ...) is shown as --field-name (flag_errors)
FLAGS = {**options.flags(GanTrainConfig), "world_size": "torchrun --nproc_per_node"}


def add_arguments(p) -> None:
    options.add_options(p, GanTrainConfig)  # one flag per GanTrainConfig field, and --config FILE
    g = p.add_argument_group(options.NOT_CONFIG)
    g.add_argument("--out", required=True, help="run folder RUN")
    g.add_argument("--resume", action="store_true", help="continue RUN/checkpoints/last exactly")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from branchspec.experiments import gan
    from branchspec.checkpoint import checkpoint_exists, restore_runtime
    from branchspec.gan.config import saved_precision

    kw = options.values(args, GanTrainConfig)  # defaults < --config FILE < flags given
    if args.amp:  # the old flag: --precision bf16, over a --config file's precision too
        if args.precision not in (None, "bf16"):
            raise UsageError(f"--amp means --precision bf16, but --precision {args.precision} was given")
        kw["precision"] = "bf16"
    out = Path(args.out)
    if "precision" not in kw:  # a resumed run keeps the precision it was trained with
        kw["precision"] = saved_precision(out / "checkpoints" / "last") if args.resume else "auto"
    with flag_errors(FLAGS):
        cfg = GanTrainConfig(**kw)
    at_most(cfg.img_size, MAX_IMG_SIZE, FLAGS["img_size"])
    at_most(cfg.num_branches, MAX_BRANCHES, FLAGS["num_branches"])
    for name in ("base_width", "max_width"):
        at_most(getattr(cfg, name), 4096, FLAGS[name])
    data = cfg.data
    if data != "embedded" and not os.path.exists(data.partition(":")[0] if not os.path.exists(data) else data):
        raise UsageError(f"--data: no such folder: {data}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device available")
    out = writable_dir(args.out, "--out")
    warn_emulated_bf16(getattr(args, "_prog", "branchspec"), cfg.precision, cfg.device)
    if args.resume and not checkpoint_exists(out / "checkpoints" / "last"):
        raise UsageError(f"--resume: no checkpoint {out / 'checkpoints' / 'last.json'}")
    if args.threads is not None:
        torch.set_num_threads(at_least(args.threads, 1, "--threads"))
    elif args.resume:
        restore_runtime(out / "checkpoints" / "last")  # the thread count the run was saved with: exact resume
    with flag_errors(FLAGS):  # the library names fields (resume, data, batch_size, ...): here they become flags
        res = gan.run(gan.Config(train=cfg, resume=args.resume, progress=not args.no_progress), out)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"train-gan: checkpoint {res['train']['checkpoint']}")
    return 0
