"""``branchspec hessian``: Hessian block structure of a branched checkpoint (§5.2, §8, Fig. 5)."""

from __future__ import annotations

from pathlib import Path

from branchspec.commands._common import at_least, existing_dir, writable_dir
from branchspec.errors import BranchspecError, UsageError

NAME = "hessian"
HELP = "exact / probe-estimated Hessian over a parameter subset of a branched checkpoint; block structure"
DESCRIPTION = (
    "Compute the Hessian of the training loss w.r.t. the same parameters of every branch (e.g. the first "
    "layer, as in Fig. 5 panels 3-4), ordered branch by branch, and measure how block diagonal it is "
    "(share of squared Frobenius mass inside the M diagonal blocks). Also checks eq. 14 (inter-branch "
    "entries = distributive x collaborative factors). Writes DIR/hessian.json, DIR/hessian.npz and figures. "
    "Data and loss per model kind: toy = the toy set of the checkpoint (default Toy1) with the L2 loss; "
    "classifier = scikit-learn digits at 32x32 (or --data CIFAR folder) with the clamped cross-entropy of §6."
)


def add_arguments(p):
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="checkpoint (NAME, NAME.json or NAME.safetensors) of a branched model")
    p.add_argument("--params", default="first-layer",
                   help="parameter subset of every branch: first-layer (default), last-layer, all, "
                        "or comma-separated names / globs inside a branch (e.g. 'conv1.weight')")
    p.add_argument("--batch", type=int, default=128, metavar="N", help="samples the loss is taken on (default 128)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--compare-checkpoint", metavar="INIT_CKPT",
                   help="a second checkpoint of the same model (e.g. at initialisation) drawn side by side")
    p.add_argument("--probes", type=int, default=0, metavar="K",
                   help="also estimate block norms from K random probes per block (Hessian-vector products); "
                        "used alone when the exact Hessian is over the memory budget")
    p.add_argument("--max-memory-gb", type=float, default=2.0, metavar="G",
                   help="refuse exact Hessians whose matrices need more than G GiB (default 2)")
    p.add_argument("--method", choices=("auto", "direct", "blockwise"), default="auto",
                   help="exact method: direct forward-over-reverse, eq. 13-14 blockwise, or auto (default)")
    p.add_argument("--data", metavar="DIR", help="classifier only: a cifar-10-batches-py folder instead of digits")
    p.add_argument("--seed", type=int, default=0, help="seed of the probes and column checks (default 0)")


def _load(path: str, arg: str):
    from branchspec.loading import load_model
    from branchspec.train.checkpoint import checkpoint_exists, checkpoint_paths

    if not checkpoint_exists(path):
        raise UsageError(f"{arg}: no such checkpoint: {path} (expected {checkpoint_paths(path)[1]})")
    return load_model(path)


def _analyze_one(path: str, arg: str, args, label: str):
    from branchspec.branched import as_branched
    from branchspec.hessian import HessianConfig, data_for, select_params

    model, state = _load(path, arg)
    try:
        branched = as_branched(model)
    except BranchspecError as exc:
        raise BranchspecError(f"{arg}: {exc}") from None
    try:
        select_params(branched, args.params)
    except BranchspecError as exc:
        raise UsageError(f"--params: {exc}") from None
    kind = state["model"]["kind"]
    data = data_for(kind, branched, state, args.batch, args.data)
    cfg = HessianConfig(params=args.params, batch=args.batch, method=args.method, probes=args.probes,
                        max_memory_gb=args.max_memory_gb, seed=args.seed)
    res, H = cfg.run(branched, data)
    res.update(checkpoint=str(path), model_kind=kind, label=label)
    return res, H


def run(args) -> int:
    from branchspec.figures.hessian import draw
    from branchspec.hessian import save_results

    at_least(args.batch, 1, "--batch")
    at_least(args.probes, 0, "--probes")
    if not args.max_memory_gb > 0:
        raise UsageError(f"--max-memory-gb must be > 0, got {args.max_memory_gb}")
    if args.data is not None:
        existing_dir(args.data, "--data")
    out = writable_dir(args.out)
    res, H = _analyze_one(args.checkpoint, "--checkpoint", args, Path(args.checkpoint).name)
    cmp, Hc = None, None
    if args.compare_checkpoint:
        cmp, Hc = _analyze_one(args.compare_checkpoint, "--compare-checkpoint", args,
                               Path(args.compare_checkpoint).name)
        if cmp["boundaries"] != res["boundaries"]:
            raise UsageError(f"--compare-checkpoint: its subset has {cmp['num_params']} parameters in "
                             f"{cmp['num_branches']} branches, the checkpoint {res['num_params']} in {res['num_branches']}")
    jp, npz = save_results(out, res, H, cmp, Hc)
    figs = draw(out)
    line = f"block diagonality {res['block_diagonality']:.4f} over {res['num_params']} parameters ({res['method']})"
    if cmp is not None:
        line += f"; compare checkpoint {cmp['block_diagonality']:.4f}"
    print(line)
    print(f"wrote {jp}" + (f", {npz}" if npz else "") + "".join(f", {f}" for f in figs))
    return 0
