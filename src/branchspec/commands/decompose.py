"""``branchspec decompose``: split images into a branched generator's components (§7, Figs. 10–11)."""

from __future__ import annotations

from branchspec.commands._common import MAX_IMG_SIZE, at_most, device_arg, at_least, writable_dir
from branchspec.errors import BranchspecError, UsageError

NAME = "decompose"
HELP = "decompose images into the ambient-space components of a trained branched generator"
DESCRIPTION = (
    "Run a trained branched generator (branchspec train-gan) once on every image: f = R + sum_k v_k. "
    "Writes per image NAME.npz (R, components, output before clipping, input) and PNGs "
    "(re-generation, R, every component contrast-stretched, re-generation + each component), "
    "plus grid.png and decomposition.json (branch covariance/correlation, active/silent counts, "
    "PSNR/SSIM of re-generation vs input) over all images. The target domain is the image's own "
    "(its folder name) unless --domain is given."
)


def add_arguments(p):
    p.add_argument("images", nargs="*", metavar="IMAGE_OR_FOLDER", help="image files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="generator checkpoint (NAME, NAME.json or NAME.safetensors)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--domain", default=None, metavar="NAME", help="target domain for every image (default: the image's folder name)")
    p.add_argument("--img-size", type=int, default=None, metavar="S", help="resize to S×S (default: the checkpoint's img_size)")
    p.add_argument("--batch-size", type=int, default=8, help="images per generator pass (default 8)")
    p.add_argument("--grid-rows", type=int, default=8, help="images shown in grid.png (default 8)")
    p.add_argument("--held-out", action="store_true",
                   help="also decompose the images the checkpoint's training run held out (train-gan --holdout)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


def load_generator(ckpt: str, device: str = "cpu"):
    """(generator, domains, img_size, value_range, state) from a train-gan checkpoint; one-line errors."""
    from branchspec.branched import as_branched
    from branchspec.models.registry import load_model
    from branchspec.train.checkpoint import checkpoint_exists, checkpoint_paths

    _, spath = checkpoint_paths(ckpt)
    if not checkpoint_exists(ckpt):
        raise UsageError(f"--checkpoint: no such checkpoint: {ckpt} (looked for {spath})")
    device_arg(device)
    model, state = load_model(ckpt, device=device)
    gen = as_branched(model, "branched generator")
    domains = state.get("domains")
    if not isinstance(domains, list) or not domains:
        raise BranchspecError(f"--checkpoint: {ckpt} does not list its domains (no 'domains' in its state)")
    vr = tuple(state.get("value_range", (-1.0, 1.0)))
    return gen, [str(d) for d in domains], state.get("img_size"), vr, state


def held_out_files(state: dict, ckpt: str) -> list:
    """The held-out image files recorded by ``train-gan --holdout`` (that still exist)."""
    from pathlib import Path

    rec = state.get("held_out") or {}
    files = [Path(f) for f in rec.get("files", [])]
    if not files:
        raise UsageError(f"--held-out: checkpoint {ckpt} records no held-out images (train-gan --holdout N)")
    missing = [f for f in files if not f.is_file()]
    if len(missing) == len(files):
        raise UsageError(f"--held-out: none of the {len(files)} held-out files exists any more (first: {files[0]})")
    return [f for f in files if f.is_file()]


def _check_size(size) -> None:
    if not isinstance(size, int) or isinstance(size, bool):
        raise UsageError(f"--img-size must be an integer, got {size!r}")
    at_least(size, 8, "--img-size")
    at_most(size, MAX_IMG_SIZE, "--img-size")
    if size & (size - 1):
        raise UsageError(f"--img-size must be a power of two (the generator halves it), got {size}")


def run(args) -> int:
    from branchspec.apps.decompose import decompose_images, find_images, image_domain

    at_least(args.batch_size, 1, "--batch-size")
    at_least(args.grid_rows, 1, "--grid-rows")
    if not args.images and not args.held_out:
        raise UsageError("IMAGE_OR_FOLDER: give images or folders to decompose (or --held-out)")
    if args.img_size is not None:
        _check_size(args.img_size)
    device_arg(args.device)
    paths = find_images(args.images) if args.images else []
    gen, domains, ckpt_size, vr, state = load_generator(args.checkpoint, args.device)
    if args.held_out:
        paths += held_out_files(state, args.checkpoint)
    size = args.img_size if args.img_size is not None else ckpt_size
    if size is None:
        raise UsageError("--img-size: the checkpoint does not record img_size; give --img-size S")
    _check_size(size)
    for p in paths:  # every domain problem before any work
        image_domain(p, domains, args.domain)
    out = writable_dir(args.out)
    res = decompose_images(gen, paths, out, domains, img_size=int(size), domain=args.domain,
                           batch_size=args.batch_size, value_range=vr, grid_rows=args.grid_rows,
                           progress=True, device=args.device)
    s = res.summary
    if not res.npz:
        raise BranchspecError(f"no image could be read ({len(res.skipped)} skipped); see {res.json_path}")
    ssim = f"{s['ssim']:.3f}" if s.get("ssim") is not None else "n/a"
    psnr = f"{s['psnr']:.2f} dB" if s.get("psnr") is not None else "n/a"
    print(f"decomposed {s['images']} image(s), skipped {s['skipped']}; PSNR {psnr}, SSIM {ssim}, "
          f"mean |corr| {s['mean_abs_correlation']:.3f} (centred {s['mean_abs_pearson']:.3f}), active {s['active']}/{s['branches']}")
    print(f"wrote {out}/*.npz, {out}/grid.png, {res.json_path}")
    return 0
