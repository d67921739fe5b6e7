"""``branchspec segment``: unsupervised Chan–Vese segmentation of cats' eyes (App. F, Figs. 12, 21)."""

from __future__ import annotations

from branchspec.commands._common import existing_file, writable_dir

NAME = "segment"
HELP = "segment cats' eyes from a decomposition with Chan-Vese (paper App. F)"
DESCRIPTION = (
    "Chan-Vese segmentation (scikit-image) on decomposition components: the initial level set comes from "
    "'locator' components (strong at eyes and nose), the segmented image is a 'target' component (flat "
    "inside the eyes), RGB -> HSV Value; connected regions that come in pairs on the same rows are kept. "
    "Locator and target are chosen automatically (see docs/apps.md) unless --locator / --target are given. "
    "Writes mask.png, mask.npy, overlay.png, segmentation.png and segment.json (Dice and IoU with --truth)."
)


def add_arguments(p):
    p.add_argument("decomposition", metavar="DECOMPOSITION.npz", help="a decomposition written by 'branchspec decompose'")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--locator", default=None, metavar="I,J", help="locator component(s) (default: automatic)")
    p.add_argument("--target", type=int, default=None, metavar="K", help="component to segment (default: automatic)")
    p.add_argument("--truth", default=None, metavar="MASK.png", help="ground-truth mask (non-zero = eye) for Dice / IoU")
    p.add_argument("--mu", type=float, default=0.1, help="Chan-Vese length penalty (default 0.1)")
    p.add_argument("--iterations", type=int, default=300, help="Chan-Vese iterations (default 300)")


def run(args) -> int:
    from branchspec.apps.components import Decomposition
    from branchspec.apps.manipulation import parse_indices
    from branchspec.commands._common import at_least, finite, flag_errors
    from branchspec.errors import UsageError
    from branchspec.experiments import apps

    existing_file(args.decomposition, "DECOMPOSITION.npz")
    if args.truth is not None:
        existing_file(args.truth, "--truth")
    finite(args.mu, "--mu", 0)
    at_least(args.iterations, 1, "--iterations")
    dec = Decomposition.load(args.decomposition)
    m = dec.num_components
    loc = tuple(parse_indices(args.locator, m, "--locator")) if args.locator is not None else None
    if args.target is not None and not 0 <= args.target < m:
        raise UsageError(f"--target: component {args.target} out of range 0..{m - 1}")
    out = writable_dir(args.out)
    sc = apps.Segment(locators=loc, target=args.target, truth=args.truth or "", mu=args.mu,
                      iterations=args.iterations, folder="")
    with flag_errors({"truth": "--truth"}):
        res = apps.run(apps.Config(decomposition=args.decomposition, segment=sc), out)["segmentation"]
    if res["truth_resized"]:
        print(f"note: --truth resized (nearest) to {dec.R.shape[2]}x{dec.R.shape[1]}")
    line = (f"locators {res['locators']}, target {res['target']} ({'automatic' if res['automatic'] else 'manual'}); "
            f"{res['kept']} of {res['regions']} regions kept, {res['mask_pixels']} mask pixels")
    if res["dice"] is not None:
        line += f"; Dice {res['dice']:.3f}, IoU {res['iou']:.3f}"
    print(line)
    print(f"wrote {out}/mask.png, mask.npy, overlay.png, segmentation.png, segment.json")
    return 0
