"""``branchspec train-classifier``: train the branched CIFAR-10 classifier of §6."""

from __future__ import annotations

from pathlib import Path

import torch

from branchspec import options
from branchspec.commands._common import (
    MAX_BRANCHES, MAX_IMG_SIZE, at_least, at_most, existing_dir, flag_errors, int_range, warn_emulated_bf16,
    writable_dir,
)
from branchspec.errors import UsageError
from branchspec.classifier.config import RUN_RECORD_KEYS, TrainConfig

MAX_WIDTH = 256  # branch base width: the default is 5.4, a ResNet18 is 64

NAME = "train-classifier"
HELP = "train M summed slim-ResNet18 branches on CIFAR-10 (or the embedded digits), paper §6"
DESCRIPTION = (
    "Train f = clamp(Σ_k v_k(x), -1, 1) with the cross-entropy against softmax of the ±1 class vector (§6). "
    "Writes RUN/config.json, RUN/metrics.csv (one row per epoch) and the checkpoint RUN/last.{json,safetensors} "
    "(every epoch); --resume continues exactly. With --sweep the runs for several M go to RUN/M<m>/ and "
    "RUN/sweep.json + RUN/sweep.png give #active and #silent branches vs M (Figs. 5 panel 1, 17 right), "
    "RUN/sweep-outputs.png every branch's class-mean output per M (Fig. 17 left). "
    "Runs under torchrun (DistributedDataParallel; --batch-size is the global batch, split over the processes). "
    "Every option but the run-control ones is a field of TrainConfig (branchspec.classifier.config); "
    "--config recipes/NAME.toml sets them from a file (the recipes behind the published results)."
)


# config field (or library parameter) -> its flag, to name it in an error; any other field the library names
# (resume, threads, ...) is shown as --field-name (flag_errors)
FLAGS = {**options.flags(TrainConfig), "procs": "--sweep-procs", "world_size": "torchrun --nproc_per_node"}


def add_arguments(p):
    from branchspec.experiments import classifier

    options.add_options(p, TrainConfig)  # one flag per TrainConfig field, and --config FILE
    g = p.add_argument_group(options.NOT_CONFIG)
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--resume", action="store_true", help="continue RUN/last exactly where it stopped")
    g.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps in total")
    g.add_argument("--sweep", default=None, help="train one run per M, e.g. 2,4,8,16,32 (overrides --branches)")
    g.add_argument("--sweep-procs", type=int, default=None,
                   help=f"train the sweep's runs on this many processes, largest M first (default "
                        f"{classifier.Config.sweep_procs}); on CUDA process i uses GPU i mod n_gpus; with --threads "
                        "each process uses that many threads")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from branchspec.checkpoint import checkpoint_exists, checkpoint_paths, restore_runtime

    kw = options.values(args, TrainConfig, RUN_RECORD_KEYS)  # defaults < --config FILE < flags given
    if kw["data"] != "digits":
        existing_dir(kw["data"], FLAGS["data"])
    if "precision" not in kw:  # a resumed run keeps the precision it was started with
        kw["precision"] = _saved_precision(Path(args.out), bool(args.sweep)) if args.resume else "auto"
    with flag_errors(FLAGS):
        cfg = TrainConfig(**{**kw, "out": str(Path(args.out))})
    at_most(cfg.num_branches, MAX_BRANCHES, FLAGS["num_branches"])
    at_most(cfg.img_size, MAX_IMG_SIZE, FLAGS["img_size"])
    at_most(cfg.width, MAX_WIDTH, FLAGS["width"])
    if args.max_steps is not None:
        at_least(args.max_steps, 1, "--max-steps")
    if cfg.init_from is not None:
        # read only when the run starts: a resumed run has the weights in its own checkpoint (the source may move)
        if not args.resume and not checkpoint_exists(checkpoint_paths(cfg.init_from)[1]):
            raise UsageError(f"--init-from: no such checkpoint: {cfg.init_from}")
        if args.sweep:
            raise UsageError("--init-from: one model's weights cannot start a sweep over M; drop --sweep")
    out = writable_dir(args.out)
    warn_emulated_bf16(getattr(args, "_prog", "branchspec"), cfg.precision, cfg.device)
    if args.threads is not None:
        torch.set_num_threads(at_least(args.threads, 1, "--threads"))
    elif args.resume and not args.sweep:
        restore_runtime(Path(out) / "last")  # the thread count the run was saved with: exact resume
    from branchspec.experiments import classifier

    ms = ()
    if args.sweep:
        ms = tuple(int_range(args.sweep, "--sweep", MAX_BRANCHES))
        if ms[0] < 1:
            raise UsageError("--sweep: M must be >= 1")
    cfg = classifier.Config(train=cfg, sweep=ms, resume=args.resume, max_steps=args.max_steps,
                            progress=not args.quiet, sweep_threads=args.threads,
                            **({} if args.sweep_procs is None else {"sweep_procs": at_least(args.sweep_procs, 1,
                                                                                            "--sweep-procs")}))
    with flag_errors(FLAGS):  # the library names fields (resume, out, procs, ...): here they become flags
        res = classifier.run(cfg, out)
    if ms:
        sw = res["sweep"]
        print(f"sweep: {Path(out) / 'sweep.json'}  active {sw['active']} silent {sw['silent']} for M {sw['M']}")
        return 0
    summary = res["train"]
    state = "stopped at step {}".format(summary["step"]) if summary.get("stopped_early") else "done"
    state += f" (train loss within {cfg.train.stop_loss} of the floor)" if summary.get("loss_reached") else ""
    print(f"{state}: checkpoint {Path(out) / 'last.json'}, test accuracy {summary.get('test_acc', 'n/a')}")
    return 0


def _saved_precision(out: Path, sweep: bool = False) -> str:
    """The precision a run folder was started with (its config.json; a sweep's: that of its ``M<m>/`` runs),
    fp32 for a config.json from before precision was recorded, "auto" for a run not started yet."""
    import json

    found = set()
    for cfg in [out / "config.json"] + (sorted(out.glob("M*/config.json")) if sweep else []):
        if cfg.is_file():
            try:
                found.add(json.loads(cfg.read_text()).get("precision", "fp32"))
            except ValueError:
                raise UsageError(f"--resume: {cfg} is not valid JSON") from None
    if len(found) > 1:
        raise UsageError(f"--resume: the runs in {out} were started with different precisions {sorted(found)}; "
                         "give --precision")
    return found.pop() if found else "auto"
