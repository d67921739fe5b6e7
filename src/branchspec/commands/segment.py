"""``branchspec segment``: unsupervised Chan–Vese segmentation of cats' eyes (App. F, Figs. 12, 21)."""

from __future__ import annotations

from dataclasses import replace

from branchspec.commands._common import (
    add_decomposition_arguments, existing_file, run_on_decomposition, writable_dir,
)

NAME = "segment"
HELP = "segment cats' eyes from a decomposition with Chan-Vese (paper App. F)"
DESCRIPTION = (
    "Chan-Vese segmentation (scikit-image) on decomposition components: the initial level set comes from "
    "'locator' components (strong at eyes and nose), the segmented image is a 'target' component (flat "
    "inside the eyes), RGB -> HSV Value; connected regions that come in pairs on the same rows are kept. "
    "Locator and target are chosen automatically (see docs/apps.md) unless --locator / --target are given. "
    "Writes mask.png, mask.npy, overlay.png, segmentation.png and segment.json (Dice and IoU with --truth). "
    "Given a folder (the output of 'branchspec decompose'), segments every .npz in it: per image OUT/NAME/, "
    "plus OUT/segment.json (how many images have an eye pair) and OUT/montage.png with all overlays."
)


def add_arguments(p):
    from branchspec.experiments.apps import Segment

    add_decomposition_arguments(p, Segment)  # one flag per field of experiments.apps.Segment


def run(args) -> int:
    from branchspec.experiments.apps import Segment

    return run_on_decomposition(args, Segment, _run_file, _run_folder)


def _run_file(args, sc) -> int:
    from branchspec.apps.components import Decomposition
    from branchspec.experiments import apps

    existing_file(args.decomposition, "DECOMPOSITION.npz")
    if sc.truth:
        existing_file(sc.truth, "--truth")
    dec = Decomposition.load(args.decomposition)
    m, shape = dec.num_components, dec.R.shape
    del dec  # the run loads it again: never two copies in memory
    sc.check(m)  # locators and target among the M components
    sc.check_file()  # no folder-level choice for one image (before the output folder is made)
    out = writable_dir(args.out)
    res = apps.run(apps.Config(decomposition=args.decomposition, segment=sc), out)["segmentation"]
    if res["truth_resized"]:
        print(f"note: --truth resized (nearest) to {shape[2]}x{shape[1]}")
    line = (f"locators {res['locators']}, target {res['target']} ({'automatic' if res['automatic'] else 'manual'}); "
            f"{res['kept']} of {res['regions']} regions kept, {res['mask_pixels']} mask pixels")
    if res["dice"] is not None:
        line += f"; Dice {res['dice']:.3f}, IoU {res['iou']:.3f}"
    print(line)
    print(f"wrote {out}/mask.png, mask.npy, overlay.png, segmentation.png, segment.json")
    return 0


def _run_folder(args, sc) -> int:
    """Every decomposition in a folder: per-image results, segment.json summary, montage.png (App. F)."""
    from branchspec.apps.batch import decomposition_files
    from branchspec.experiments import apps

    sc.check_folder()  # no one truth mask
    decomposition_files(args.decomposition, "folder")  # a folder with no .npz: one-line error
    out = writable_dir(args.out)
    sc = replace(sc, progress=True)  # indices are checked against each file's M in segment_folder
    doc = apps.run(apps.Config(folder=args.decomposition, segment=sc), out)["segmentation"]
    rule = "the App. F rule" if sc.pair_rule == "rows" else "the strongest-pair rule"
    print(f"eye pair found on {doc['pairs_found']} of {doc['images']} image(s) by {rule}, "
          f"placed like eyes on {doc['eye_like_pairs']}"
          + (f"; {len(doc['skipped'])} file(s) skipped (not decompositions)" if doc["skipped"] else ""))
    if doc["on_eyes_fraction"] is not None:
        print(f"kept pair on the true eyes: {doc['on_eyes']} of {doc['marked_images']} marked image(s) "
              f"({doc['on_eyes_fraction']:.2f})")
    print(f"wrote {out}/segment.json, montage.png and one folder per image")
    return 0
