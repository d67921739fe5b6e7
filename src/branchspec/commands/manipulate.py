"""``branchspec manipulate``: ambient-space editing of a decomposition (App. A, Figs. 13–15)."""

from __future__ import annotations

from dataclasses import replace

from branchspec.commands._common import (
    add_decomposition_arguments, existing_file, run_on_decomposition, writable_dir,
)

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
    from branchspec.experiments.apps import Manipulate

    # A value starting with "-" other than a plain number reads as an option to argparse:
    # write --alphas=-1:3:9 and --gains=-1,0,2 (the '=' form), as the help says.
    add_decomposition_arguments(p, Manipulate)  # one flag per field of experiments.apps.Manipulate


def run(args) -> int:
    from branchspec.experiments.apps import Manipulate

    return run_on_decomposition(args, Manipulate, _run_file, _run_folder)


def _run_file(args, mc) -> int:
    from branchspec.apps.components import Decomposition
    from branchspec.experiments import apps

    existing_file(args.decomposition, "DECOMPOSITION.npz")
    mc.check(Decomposition.load(args.decomposition).num_components)  # indices and gains fit its M components
    out = writable_dir(args.out)
    files = apps.run(apps.Config(decomposition=args.decomposition, manipulate=mc), out)["manipulation"]["files"]
    print(f"wrote {len(files)} files to {out}: " + ", ".join(files[:6]) + (" …" if len(files) > 6 else ""))
    return 0


def _run_folder(args, mc) -> int:
    """App. A over every decomposition in a folder: sweeps.png and subsets.png montages."""
    from branchspec.apps.batch import decomposition_files
    from branchspec.experiments import apps

    mc.check_folder()  # one component, no gains
    decomposition_files(args.decomposition, "folder")  # a folder with no .npz: one-line error
    out = writable_dir(args.out)
    mc = replace(mc, subsets=mc.subsets or "thirds")  # indices are checked against each file's M in manipulate_folder
    doc = apps.run(apps.Config(folder=args.decomposition, manipulate=mc), out)["manipulation"]
    print(f"{doc['images']} image(s), component: {doc['component_rule']}; wrote {out}/sweeps.png, subsets.png, "
          "sweeps.npz, subsets.npz, manipulate.json"
          + (f"; {len(doc['skipped'])} file(s) skipped" if doc["skipped"] else ""))
    return 0
