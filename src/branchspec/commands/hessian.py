"""``branchspec hessian``: Hessian block structure of a branched checkpoint (§5.2, §8, Fig. 5)."""

from __future__ import annotations

from branchspec.commands._common import add_config_arguments, config_from_args, existing_dir, flag_errors, writable_dir

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
    from branchspec.experiments.hessian import Config

    add_config_arguments(p, Config)  # one flag per field of experiments.hessian.Config, and --out


def run(args) -> int:
    from branchspec.experiments import hessian

    cfg, flags = config_from_args(args, hessian.Config)
    if cfg.data:
        existing_dir(cfg.data, flags["data"])
    out = writable_dir(args.out)
    with flag_errors(flags):
        res = hessian.run(cfg, out)
    line = f"block diagonality {res['block_diagonality']:.4f} over {res['num_params']} parameters ({res['method']})"
    if res["compare_block_diagonality"] is not None:
        line += f"; compare checkpoint {res['compare_block_diagonality']:.4f}"
    print(f"parameters {res['picked']}")
    print(line)
    print(f"wrote {res['json']}" + (f", {res['npz']}" if res["npz"] else "") + "".join(f", {f}" for f in res["figures"]))
    return 0
