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
    p.add_argument("--judge", default=None, metavar="CLASSIFIER_CKPT",
                   help="score class transfer with a branchspec train-classifier checkpoint whose classes include "
                        "the generator's domains: transfer accuracy, source retention, own-domain PSNR/SSIM vs R "
                        "(written to decomposition.json under 'judge')")
    p.add_argument("--judge-data", default=None, metavar="SPEC",
                   help="images the judge scores: a CIFAR-10 folder (its test split, the generator's classes) or an "
                        "image-folder ROOT (ROOT/val, ROOT/test or ROOT/train); default: the decomposed images")
    p.add_argument("--judge-max", type=int, default=400, help="at most N images for the judge (default 400)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


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


def judge_images(spec, paths, domains, size, value_range, limit):
    """(x, y) the judge scores: ``spec`` (CIFAR test split / image folder) or the decomposed ``paths``."""
    import torch
    from pathlib import Path

    from branchspec.apps.decompose import image_domain, load_image
    from branchspec.data.folders import cifar_domains, load_image_folders

    if spec is None:
        xs, ys = [], []
        for p in paths[:limit]:
            try:
                xs.append(load_image(p, size, value_range))
            except (OSError, ValueError, SyntaxError):
                continue
            ys.append(domains.index(image_domain(Path(p), domains, arg="--domain")))
        if not xs:
            raise UsageError("--judge: none of the images could be read")
        return torch.stack(xs), torch.tensor(ys)
    root = Path(spec)
    if (root / "batches.meta").is_file():
        data = cifar_domains(root, train=False, classes=list(domains))
    elif root.is_dir():
        split = next((s for s in ("val", "test", "train") if (root / s).is_dir()), None)
        if split is None:
            raise UsageError(f"--judge-data: {root} has no val/, test/ or train/ folder")
        data = load_image_folders(root, size, split=split, progress=False)
    else:
        raise UsageError(f"--judge-data: no such folder: {root}")
    if data.img_size != size:
        raise UsageError(f"--judge-data: images are {data.img_size}² but the generator works at {size}²")
    keep = [i for i, lab in enumerate(data.labels.tolist()) if data.domains[lab] in domains][:limit]
    if not keep:
        raise UsageError(f"--judge-data: no images of the domains {', '.join(domains)} in {root}")
    x, y = data.batch(torch.tensor(keep))  # (N, C, S, S) in [-1, 1]
    y = torch.tensor([domains.index(data.domains[lab]) for lab in y.tolist()])
    lo, hi = value_range
    return (x + 1) / 2 * (hi - lo) + lo, y


def _check_size(size) -> None:
    if not isinstance(size, int) or isinstance(size, bool):
        raise UsageError(f"--img-size must be an integer, got {size!r}")
    at_least(size, 8, "--img-size")
    at_most(size, MAX_IMG_SIZE, "--img-size")
    if size & (size - 1):
        raise UsageError(f"--img-size must be a power of two (the generator halves it), got {size}")


def run(args) -> int:
    from branchspec.apps.decompose import decompose_images, find_images, image_domain, load_generator
    from branchspec.figures.decomposition import decomposition_grid, profile_figure

    at_least(args.batch_size, 1, "--batch-size")
    at_least(args.grid_rows, 1, "--grid-rows")
    at_least(args.judge_max, 1, "--judge-max")
    if args.judge_data and not args.judge:
        raise UsageError("--judge-data: give --judge CLASSIFIER_CKPT as well")
    if not args.images and not args.held_out:
        raise UsageError("IMAGE_OR_FOLDER: give images or folders to decompose (or --held-out)")
    if args.img_size is not None:
        _check_size(args.img_size)
    device_arg(args.device)
    paths = find_images(args.images, "IMAGE_OR_FOLDER") if args.images else []
    gen, domains, ckpt_size, vr, state = load_generator(args.checkpoint, args.device, "--checkpoint")
    if args.held_out:
        paths += held_out_files(state, args.checkpoint)
    size = args.img_size if args.img_size is not None else ckpt_size
    if size is None:
        raise UsageError("--img-size: the checkpoint does not record img_size; give --img-size S")
    _check_size(size)
    for p in paths:  # every domain problem before any work
        image_domain(p, domains, args.domain, "--domain")
    out = writable_dir(args.out)
    judge = None
    if args.judge:  # every judge problem before any work
        from branchspec.apps.judge import ClassifierJudge

        judge = ClassifierJudge.from_checkpoint(args.judge, domains, args.device, vr, "--judge")
        x, y = judge_images(args.judge_data, paths, domains, int(size), vr, args.judge_max)
    res = decompose_images(gen, paths, out, domains, img_size=int(size), domain=args.domain,
                           batch_size=args.batch_size, value_range=vr, progress=True, device=args.device)
    s = res.summary
    if not res.npz:
        raise BranchspecError(f"no image could be read ({len(res.skipped)} skipped); see {res.json_path}")
    decomposition_grid(res.npz[:args.grid_rows], out / "grid.png")  # Figs. 10–11, from the saved .npz
    profile_figure(res.json_path, out / "profiles.png")
    ssim = f"{s['ssim']:.3f}" if s.get("ssim") is not None else "n/a"
    psnr = f"{s['psnr']:.2f} dB" if s.get("psnr") is not None else "n/a"
    print(f"decomposed {s['images']} image(s), skipped {s['skipped']}; PSNR {psnr}, SSIM {ssim}, "
          f"mean |corr| {s['mean_abs_correlation']:.3f} (centred {s['mean_abs_pearson']:.3f}), active {s['active']}/{s['branches']}")
    if judge is not None:
        from branchspec.apps.decompose import add_to_summary
        from branchspec.apps.judge import judge_generator

        j = judge_generator(gen, judge, x, y, batch_size=args.batch_size, value_range=vr)
        j.update({"classifier": str(args.judge), "data": args.judge_data or "the decomposed images"})
        add_to_summary(res.json_path, "judge", j)
        profile_figure(res.json_path, out / "profiles.png")
        f = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # noqa: E731
        print(f"judge ({j['images']} images, chance {j['chance']:.2f}): transfer accuracy "
              f"{f(j['transfer_accuracy'], '.3f')}, source retention {j['source_retention']:.3f}, judge on inputs "
              f"{j['judge_accuracy_inputs']:.3f}, on R {j['judge_accuracy_residual']:.3f}; own-domain PSNR "
              f"{f(j['psnr_own'], '.2f')} dB vs R {f(j['psnr_residual_only'], '.2f')} dB")
    print(f"wrote {out}/*.npz, {out}/grid.png, {out}/profiles.png, {res.json_path}")
    return 0
