"""``branchspec decompose``: split images into a branched generator's components (§7, Figs. 10–11)."""

from __future__ import annotations

from branchspec.commands._common import MAX_IMG_SIZE, at_least, at_most, device_arg, flag_errors, writable_dir
from branchspec.errors import UsageError

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
                        "the generator's domains: transfer accuracy and lift, source retention, own-domain PSNR/SSIM "
                        "vs R, per-branch input dependence (written to decomposition.json under 'judge')")
    p.add_argument("--judge-data", default=None, metavar="SPEC",
                   help="images the judge scores: a CIFAR-10 folder (its test split, the generator's classes) or an "
                        "image-folder ROOT (ROOT/val, ROOT/test or ROOT/train); default: the decomposed images")
    p.add_argument("--judge-max", type=int, default=400, help="at most N images for the judge (default 400)")
    p.add_argument("--face-regions", action="store_true",
                   help="aligned faces: also each component's energy share in eyes, mouth, hair and background")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _check_size(size) -> None:
    if not isinstance(size, int) or isinstance(size, bool):
        raise UsageError(f"--img-size must be an integer, got {size!r}")
    at_least(size, 8, "--img-size")
    at_most(size, MAX_IMG_SIZE, "--img-size")
    if size & (size - 1):
        raise UsageError(f"--img-size must be a power of two (the generator halves it), got {size}")


FLAGS = {"images": "IMAGE_OR_FOLDER", "checkpoint": "--checkpoint", "domain": "--domain", "img_size": "--img-size",
         "held_out": "--held-out", "judge": "--judge", "judge_data": "--judge-data"}


def run(args) -> int:
    from branchspec.experiments import gan

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
    out = writable_dir(args.out)
    d = gan.Decompose(checkpoint=args.checkpoint, images=tuple(args.images), held_out=args.held_out,
                      domain=args.domain, img_size=args.img_size, batch_size=args.batch_size, grid_rows=args.grid_rows,
                      judge=args.judge or "", judge_data=args.judge_data or "", judge_max=args.judge_max,
                      face_regions=args.face_regions, device=args.device)
    with flag_errors(FLAGS):
        res = gan.run(gan.Config(decompose=d), out)
    s = res["decomposition"]
    ssim = f"{s['ssim']:.3f}" if s.get("ssim") is not None else "n/a"
    psnr = f"{s['psnr']:.2f} dB" if s.get("psnr") is not None else "n/a"
    print(f"decomposed {s['images']} image(s), skipped {s['skipped']}; PSNR {psnr}, SSIM {ssim}, "
          f"mean |corr| {s['mean_abs_correlation']:.3f} (centred {s['mean_abs_pearson']:.3f}), active {s['active']}/{s['branches']}")
    sp = s["spatial"]
    print(f"border ratio (energy share in the outer {sp['border_band']}-pixel band / its area share; 1 = no frame): "
          f"mean {sp['border_ratio_mean']:.2f}, worst branch {sp['border_ratio_max']:.2f}"
          + (f"; of the detail x - R itself {sp['border_ratio_detail']:.2f}" if "border_ratio_detail" in sp else ""))
    j = res.get("judge")
    if j is not None:
        f = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # noqa: E731
        print(f"judge ({j['images']} images, chance {j['chance']:.2f}): transfer accuracy "
              f"{f(j['transfer_accuracy'], '.3f')} (lift {f(j.get('transfer_lift'), '.3f')}; per target "
              f"{', '.join(f(v, '.2f') for v in j.get('transfer_per_target') or [])}), source retention {j['source_retention']:.3f}, judge on inputs "
              f"{j['judge_accuracy_inputs']:.3f}, on R {j['judge_accuracy_residual']:.3f}; own-domain PSNR "
              f"{f(j['psnr_own'], '.2f')} dB vs R {f(j['psnr_residual_only'], '.2f')} dB")
    extra = f", {out}/transfer.png" if j is not None else ""
    print(f"wrote {out}/*.npz, {out}/grid.png, {out}/profiles.png{extra}, {res['json']}")
    return 0
