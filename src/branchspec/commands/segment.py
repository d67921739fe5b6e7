"""``branchspec segment``: unsupervised Chan–Vese segmentation of cats' eyes (App. F, Figs. 12, 21)."""

from __future__ import annotations

from pathlib import Path

from branchspec.commands._common import at_least, existing_file, finite, flag_errors, writable_dir

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
    p.add_argument("decomposition", metavar="DECOMPOSITION.npz|FOLDER",
                   help="a decomposition written by 'branchspec decompose', or its output folder (every .npz in it)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--locator", default=None, metavar="I,J", help="locator component(s) (default: automatic)")
    p.add_argument("--target", type=int, default=None, metavar="K", help="component to segment (default: automatic)")
    p.add_argument("--truth", default=None, metavar="MASK.png", help="ground-truth mask (non-zero = eye) for Dice / IoU")
    p.add_argument("--eyes", default=None, metavar="aligned-face|MARKS.json",
                   help="folder mode: count the images whose kept pair lies on the true eyes — 'aligned-face' (the "
                        "eye centres of utkface-128's mean face) or a JSON {image name: [[row, col], [row, col]]} "
                        "of marked centres, fractions of the side")
    p.add_argument("--mu", type=float, default=0.1, help="Chan-Vese length penalty (default 0.1)")
    p.add_argument("--iterations", type=int, default=300, help="Chan-Vese iterations (default 300)")
    p.add_argument("--on", default="value", choices=("value", "energy"),
                   help="what Chan-Vese segments: the target's Value channel (App. F; default) or the locators' "
                        "energy (beyond the paper: for small images whose eyes are a few pixels of strokes)")
    p.add_argument("--energy-sigma", type=float, default=0.0, metavar="PX",
                   help="Gaussian smoothing of the locator energy in pixels (default 0: none, the paper)")


# the library's field -> its flag (flag_errors; target, truth, eyes are --target, ...)
FLAGS = {"locators": "--locator", "decomposition": "DECOMPOSITION.npz", "folder": "DECOMPOSITION.npz|FOLDER"}


def run(args) -> int:
    with flag_errors(FLAGS):
        return _run(args)


def _run(args) -> int:
    from branchspec.apps.components import Decomposition
    from branchspec.apps.manipulation import parse_indices
    from branchspec.errors import UsageError
    from branchspec.experiments import apps

    finite(args.mu, "--mu", 0)
    at_least(args.iterations, 1, "--iterations")
    finite(args.energy_sigma, "--energy-sigma", 0)
    if args.energy_sigma > 64:
        raise UsageError(f"--energy-sigma: at most 64 px, got {args.energy_sigma}")
    if Path(args.decomposition).is_dir():
        return _run_folder(args)
    existing_file(args.decomposition, "DECOMPOSITION.npz")
    if args.truth is not None:
        existing_file(args.truth, "--truth")
    dec = Decomposition.load(args.decomposition)
    m, shape = dec.num_components, dec.R.shape
    del dec  # the run loads it again: never two copies in memory
    loc = tuple(parse_indices(args.locator, m, "locators")) if args.locator is not None else None
    if args.target is not None and not 0 <= args.target < m:
        raise UsageError(f"--target: component {args.target} out of range 0..{m - 1}")
    out = writable_dir(args.out)
    sc = apps.Segment(locators=loc, target=args.target, truth=args.truth or "", mu=args.mu,
                      iterations=args.iterations, folder="", on=args.on, energy_sigma=args.energy_sigma)
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


def _run_folder(args) -> int:
    """Every decomposition in a folder: per-image results, segment.json summary, montage.png (App. F)."""
    from branchspec.apps.batch import decomposition_files
    from branchspec.apps.manipulation import parse_indices
    from branchspec.errors import UsageError
    from branchspec.experiments import apps

    if args.truth is not None:
        raise UsageError("--truth: one mask fits one image; give a single DECOMPOSITION.npz with --truth")
    decomposition_files(args.decomposition, "folder")  # a folder with no .npz: one-line error
    big = 4096  # indices are checked against each file's M in segment()
    loc = parse_indices(args.locator, big, "locators") if args.locator is not None else None
    if args.target is not None and args.target < 0:
        raise UsageError(f"--target: component {args.target} must be >= 0")
    out = writable_dir(args.out)
    eyes = _eye_marks(args.eyes) if args.eyes is not None else None
    sc = apps.Segment(locators=tuple(loc) if loc is not None else None, target=args.target, mu=args.mu,
                      iterations=args.iterations, folder="", on=args.on, energy_sigma=args.energy_sigma, eyes=eyes,
                      progress=True)
    doc = apps.run(apps.Config(folder=args.decomposition, segment=sc), out)["segmentation"]
    print(f"eye pair found on {doc['pairs_found']} of {doc['images']} image(s) by the App. F rule, "
          f"placed like eyes on {doc['eye_like_pairs']}"
          + (f"; {len(doc['skipped'])} file(s) skipped (not decompositions)" if doc["skipped"] else ""))
    if doc["on_eyes_fraction"] is not None:
        print(f"kept pair on the true eyes: {doc['on_eyes']} of {doc['marked_images']} marked image(s) "
              f"({doc['on_eyes_fraction']:.2f})")
    print(f"wrote {out}/segment.json, montage.png and one folder per image")
    return 0


def _eye_marks(spec: str) -> dict:
    """``--eyes``: {"*": EYE_CENTRES} for 'aligned-face', else a JSON of per-image marks (one-line errors;
    keys starting with "_" are comments)."""
    import json
    import math

    from branchspec.apps.spatial import EYE_CENTRES
    from branchspec.errors import UsageError

    if spec == "aligned-face":
        return {"*": [list(c) for c in EYE_CENTRES]}
    path = existing_file(spec, "--eyes")
    try:
        marks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"--eyes: {path} is not readable JSON ({type(exc).__name__})") from None
    if isinstance(marks, dict):  # keys starting with "_" are comments
        marks = {k: v for k, v in marks.items() if not k.startswith("_")}
    ok = isinstance(marks, dict) and all(
        isinstance(v, list) and len(v) == 2 and all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(t, (int, float)) and not isinstance(t, bool)
                                                        and math.isfinite(t) and 0 <= t <= 1 for t in c) for c in v)
        for v in marks.values())
    if not ok:
        raise UsageError(f"--eyes: {path} must map image names to [[row, col], [row, col]] fractions in [0, 1]")
    return marks
