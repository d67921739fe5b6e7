"""``branchspec manipulate``: ambient-space editing of a decomposition (App. A, Figs. 13–15)."""

from __future__ import annotations

from branchspec.commands._common import existing_file, writable_dir

NAME = "manipulate"
HELP = "sweep, sum or re-weight the components of a decomposition (.npz from 'branchspec decompose')"
DESCRIPTION = (
    "Ambient-space manipulation (paper App. A). For each chosen component K writes the sweep "
    "R + sum_{j!=K} v_j + alpha*v_K over --alphas as a strip (strip.png, all components in rows) and an "
    "animated GIF (sweep_K.gif); --subsets writes R + sum_{k in S} v_k for each subset S (Fig. 15); "
    "--gains writes R + sum_k g_k v_k. Arrays are saved as .npz next to the figures."
)


def add_arguments(p):
    # A value starting with "-" other than a plain number reads as an option to argparse:
    # write --alphas=-1:3:9 and --gains=-1,0,2 (the '=' form), as the help says.
    p.add_argument("decomposition", metavar="DECOMPOSITION.npz", help="a decomposition written by 'branchspec decompose'")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--component", action="append", default=None, metavar="K",
                   help="component(s) to sweep, repeatable or comma-separated (default: all)")
    p.add_argument("--alphas", default="-1:3:9", help="START:STOP:COUNT or a comma list (default -1:3:9); write --alphas=-1:3:9 when it starts with '-'")
    p.add_argument("--subsets", nargs="+", default=(), metavar="I,J,...", help="component subsets to sum, e.g. 0,3,5 1,2")
    p.add_argument("--gains", default=None, metavar="G0,G1,...", help="one gain per component: R + sum_k g_k v_k; write --gains=-1,0,2 when it starts with '-'")
    p.add_argument("--no-gif", action="store_true", help="skip the animated GIFs")


def run(args) -> int:
    from branchspec.apps.components import Decomposition
    from branchspec.apps.manipulation import parse_alphas, parse_gains, parse_indices
    from branchspec.experiments import apps

    existing_file(args.decomposition, "DECOMPOSITION.npz")
    alphas = parse_alphas(args.alphas, "--alphas")
    m = Decomposition.load(args.decomposition).num_components
    comps = None
    if args.component:
        comps = tuple(sorted({k for text in args.component for k in parse_indices(text, m, "--component")}))
    subsets = tuple(tuple(parse_indices(s, m, "--subsets")) for s in args.subsets)
    gains = tuple(parse_gains(args.gains, m, "--gains")) if args.gains is not None else None
    out = writable_dir(args.out)
    mc = apps.Manipulate(components=comps, alphas=tuple(alphas), subsets=subsets, gains=gains,
                         gif="none" if args.no_gif else "all", folder="")
    files = apps.run(apps.Config(decomposition=args.decomposition, manipulate=mc), out)["manipulation"]["files"]
    print(f"wrote {len(files)} files to {out}: " + ", ".join(files[:6]) + (" …" if len(files) > 6 else ""))
    return 0
