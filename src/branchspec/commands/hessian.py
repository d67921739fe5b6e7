"""``branchspec hessian``: Hessian block structure of a branched checkpoint (§5.2, §8, Fig. 5)."""

from __future__ import annotations

from branchspec.commands._common import at_least, existing_dir, flag_errors, writable_dir
from branchspec.errors import UsageError

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
                   help="refuse exact Hessians whose matrices need more than G GiB (default 2; never more than the "
                        "memory budget, BRANCHSPEC_MEMORY_GB)")
    p.add_argument("--method", choices=("auto", "direct", "blockwise"), default="auto",
                   help="exact method: direct forward-over-reverse, eq. 13-14 blockwise, or auto (default)")
    p.add_argument("--data", metavar="DIR", help="classifier only: a cifar-10-batches-py folder instead of digits")
    p.add_argument("--seed", type=int, default=0, help="seed of the probes and column checks (default 0)")


FLAGS = {"checkpoint": "--checkpoint", "compare_checkpoint": "--compare-checkpoint", "params": "--params"}


def run(args) -> int:
    from branchspec.experiments import hessian

    at_least(args.batch, 1, "--batch")
    at_least(args.probes, 0, "--probes")
    if not args.max_memory_gb > 0:
        raise UsageError(f"--max-memory-gb must be > 0, got {args.max_memory_gb}")
    if args.data is not None:
        existing_dir(args.data, "--data")
    out = writable_dir(args.out)
    cfg = hessian.Config(checkpoint=args.checkpoint, compare_checkpoint=args.compare_checkpoint or "",
                         params=args.params, batch=args.batch, probes=args.probes, max_memory_gb=args.max_memory_gb,
                         method=args.method, data=args.data or "", seed=args.seed)
    with flag_errors(FLAGS):
        res = hessian.run(cfg, out)
    line = f"block diagonality {res['block_diagonality']:.4f} over {res['num_params']} parameters ({res['method']})"
    if res["compare_block_diagonality"] is not None:
        line += f"; compare checkpoint {res['compare_block_diagonality']:.4f}"
    print(f"parameters {res['picked']}")
    print(line)
    print(f"wrote {res['json']}" + (f", {res['npz']}" if res["npz"] else "") + "".join(f", {f}" for f in res["figures"]))
    return 0
