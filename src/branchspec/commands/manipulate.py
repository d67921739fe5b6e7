"""``branchspec manipulate``: ambient-space editing of a decomposition (App. A, Figs. 13–15)."""

from __future__ import annotations

from pathlib import Path

from branchspec.commands._common import existing_file, flag_errors, writable_dir

NAME = "manipulate"
HELP = "sweep, sum or re-weight the components of a decomposition (.npz from 'branchspec decompose')"
DESCRIPTION = (
    "Ambient-space manipulation (paper App. A). For each chosen component K writes the sweep "
    "R + sum_{j!=K} v_j + alpha*v_K over --alphas as a strip (strip.png, all components in rows) and an "
    "animated GIF (sweep_K.gif); --subsets writes R + sum_{k in S} v_k for each subset S (Fig. 15); "
    "--gains writes R + sum_k g_k v_k. Arrays are saved as .npz next to the figures. "
    "Given a folder (the output of 'branchspec decompose'), writes one montage over all its .npz: one sweep row "
    "per image of --component K (default: each image's component with the largest energy share) in "
    "sweeps.png, and the re-generation with subset sums per image in subsets.png (default subsets: the "
    "strongest third of the components by energy vs the rest)."
)


def add_arguments(p):
    # A value starting with "-" other than a plain number reads as an option to argparse:
    # write --alphas=-1:3:9 and --gains=-1,0,2 (the '=' form), as the help says.
    p.add_argument("decomposition", metavar="DECOMPOSITION.npz|FOLDER",
                   help="a decomposition written by 'branchspec decompose', or its output folder (every .npz in it)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--component", action="append", default=None, metavar="K",
                   help="component(s) to sweep, repeatable or comma-separated (default: all)")
    p.add_argument("--alphas", default="-1:3:9", help="START:STOP:COUNT or a comma list (default -1:3:9); write --alphas=-1:3:9 when it starts with '-'")
    p.add_argument("--subsets", nargs="+", default=(), metavar="I,J,...", help="component subsets to sum, e.g. 0,3,5 1,2")
    p.add_argument("--gains", default=None, metavar="G0,G1,...", help="one gain per component: R + sum_k g_k v_k; write --gains=-1,0,2 when it starts with '-'")
    p.add_argument("--no-gif", action="store_true", help="skip the animated GIFs")


# the library's field -> its flag (flag_errors; alphas, subsets, gains, component are --alphas, ...)
FLAGS = {"components": "--component", "decomposition": "DECOMPOSITION.npz", "folder": "DECOMPOSITION.npz|FOLDER"}


def run(args) -> int:
    with flag_errors(FLAGS):
        return _run(args)


def _run(args) -> int:
    from branchspec.apps.components import Decomposition
    from branchspec.apps.manipulation import parse_alphas, parse_gains, parse_indices
    from branchspec.experiments import apps

    alphas = parse_alphas(args.alphas, "alphas")
    if Path(args.decomposition).is_dir():
        return _run_folder(args, alphas)
    existing_file(args.decomposition, "DECOMPOSITION.npz")
    m = Decomposition.load(args.decomposition).num_components
    comps = None
    if args.component:
        comps = tuple(sorted({k for text in args.component for k in parse_indices(text, m, "components")}))
    subsets = tuple(tuple(parse_indices(s, m, "subsets")) for s in args.subsets)
    gains = tuple(parse_gains(args.gains, m, "gains")) if args.gains is not None else None
    out = writable_dir(args.out)
    mc = apps.Manipulate(components=comps, alphas=tuple(alphas), subsets=subsets, gains=gains,
                         gif="none" if args.no_gif else "all", folder="")
    files = apps.run(apps.Config(decomposition=args.decomposition, manipulate=mc), out)["manipulation"]["files"]
    print(f"wrote {len(files)} files to {out}: " + ", ".join(files[:6]) + (" …" if len(files) > 6 else ""))
    return 0


def _run_folder(args, alphas) -> int:
    """App. A over every decomposition in a folder: sweeps.png and subsets.png montages."""
    from branchspec.apps.batch import decomposition_files
    from branchspec.apps.manipulation import parse_indices
    from branchspec.errors import UsageError
    from branchspec.experiments import apps

    if args.gains is not None:
        raise UsageError("--gains: one gain per component fits one decomposition; give a single DECOMPOSITION.npz")
    decomposition_files(args.decomposition, "folder")  # a folder with no .npz: one-line error
    big = 4096  # checked against each file's M in manipulate_folder
    comps = sorted({k for text in args.component or () for k in parse_indices(text, big, "components")})
    if len(comps) > 1:
        raise UsageError("--component: a folder takes one component K (one sweep row per image)")
    subsets = tuple(tuple(parse_indices(s, big, "subsets")) for s in args.subsets) or "thirds"
    out = writable_dir(args.out)
    mc = apps.Manipulate(components=tuple(comps) or None, alphas=tuple(alphas), subsets=subsets, folder="")
    doc = apps.run(apps.Config(folder=args.decomposition, manipulate=mc), out)["manipulation"]
    print(f"{doc['images']} image(s), component: {doc['component_rule']}; wrote {out}/sweeps.png, subsets.png, "
          "sweeps.npz, subsets.npz, manipulate.json"
          + (f"; {len(doc['skipped'])} file(s) skipped" if doc["skipped"] else ""))
    return 0
