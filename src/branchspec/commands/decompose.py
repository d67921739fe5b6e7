"""``branchspec decompose``: split images into a branched generator's components (§7, Figs. 10–11)."""

from __future__ import annotations

from branchspec.commands._common import (
    add_config_arguments, config_from_args, device_arg, flag_errors, writable_dir,
)

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
    from branchspec.experiments.gan import Decompose

    add_config_arguments(p, Decompose)  # one flag per field of experiments.gan.Decompose, and --out


def run(args) -> int:
    from branchspec.experiments import gan

    d, flags = config_from_args(args, gan.Decompose)
    device_arg(d.device, flags["device"])
    out = writable_dir(args.out)
    with flag_errors(flags):
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
