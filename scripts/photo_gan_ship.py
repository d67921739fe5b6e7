"""Evaluate a §7 photograph generator on its collection's val images and ship it with its figures.

Every number and figure comes from the ``branchspec`` commands it runs (printed before each):

1. ``decompose`` of the first N val images of every domain, judged by a classifier trained on the same
   collection (transfer accuracy, own-domain PSNR vs R), border ratio, and face-region shares
   (``--face-regions``) for aligned faces → ``OUT/decompose/`` (grid, transfer, profiles, correlation);
2. ``segment`` of those decompositions (App. F): eye pairs, with ``--eyes aligned-face`` for faces or the
   committed marks of 30 val cats → ``OUT/segment/``;
3. ``manipulate`` of the same folder (App. A): α-sweeps of the strongest component per image
   → ``OUT/manipulate/``;
4. ``export`` of the EMA generator (weights only) to ``SHIP/last``, the run's config and log beside it, the
   figures under ``SHIP/figures/`` and ``SHIP/shipped.json`` (read by the report).

    python scripts/photo_gan_ship.py --run RUN --data ../shared/data/catdog-128 --judge JUDGE/last \\
        --ship checkpoints/gan-catdog-64 --out /tmp/eval-catdog [--faces] [--eyes results/catdog-val-cat-eyes.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from branchspec.cli import main as branchspec


def call(*args: str) -> None:
    print("$ branchspec " + " ".join(args), flush=True)
    rc = branchspec(list(args))
    if rc:
        sys.exit(rc)


ENERGY = ("--on", "energy", "--energy-sigma", "1.5")
"""App. F beyond the paper for 64² models (docs/apps.md): Chan–Vese on the locators' energy."""
VARIANT = ENERGY + ("--pair-rule", "strongest", "--choose-locators", "folder")
"""... with the strongest row-sharing pair and one locator choice per folder."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="train-gan run folder (RUN/checkpoints/last)")
    ap.add_argument("--data", required=True, help="the collection ROOT (ROOT/val/<domain>/)")
    ap.add_argument("--judge", required=True, help="train-classifier checkpoint on the same collection")
    ap.add_argument("--ship", required=True, help="folder of the shipped model (e.g. checkpoints/gan-catdog-64)")
    ap.add_argument("--out", required=True, help="scratch folder for the full evaluation")
    ap.add_argument("--per-domain", type=int, default=100, help="val images per domain (default 100)")
    ap.add_argument("--faces", action="store_true", help="aligned faces: face-region shares, --eyes aligned-face")
    ap.add_argument("--component", default=None, metavar="K",
                    help="App. A: sweep component K of every image (default: each image's strongest)")
    ap.add_argument("--eyes", default=None, help="marks JSON for segment --eyes (default: aligned-face with --faces)")
    args = ap.parse_args()
    out, ship = Path(args.out), Path(args.ship)
    ckpt = str(Path(args.run) / "checkpoints" / "last")
    val = Path(args.data) / "val"
    images = [str(p) for d in sorted(q for q in val.iterdir() if q.is_dir())
              for p in sorted(d.iterdir())[:args.per_domain]]
    dec = out / "decompose"
    call("decompose", "--checkpoint", ckpt, *images, "--out", str(dec), "--judge", args.judge, "--grid-rows", "8",
         *(["--face-regions"] if args.faces else []))
    eyes = args.eyes or ("aligned-face" if args.faces else None)
    call("segment", str(dec), "--out", str(out / "segment"), *(["--eyes", eyes] if eyes else []))
    call("segment", str(dec), "--out", str(out / "segment-energy"), *(["--eyes", eyes] if eyes else []), *ENERGY)
    call("segment", str(dec), "--out", str(out / "segment-variant"), *(["--eyes", eyes] if eyes else []), *VARIANT)
    call("manipulate", str(dec), "--out", str(out / "manipulate"), "--alphas=-1:3:5", "--no-gif",
         *(["--component", args.component] if args.component is not None else []))

    ship.mkdir(parents=True, exist_ok=True)
    call("export", "--checkpoint", ckpt, "--out", str(ship / "last"))
    for name in ("config.json", "log.jsonl"):
        shutil.copyfile(Path(args.run) / name, ship / name)
    figs = ship / "figures"
    figs.mkdir(exist_ok=True)
    summary = json.loads((dec / "decomposition.json").read_text())
    seg = json.loads((out / "segment" / "segment.json").read_text())
    for src, name in ((dec / "grid.png", "grid.png"), (dec / "transfer.png", "transfer.png"),
                      (dec / "profiles.png", "profiles.png"), (dec / "correlation.png", "correlation.png"),
                      (out / "segment" / "montage.png", "segment.png"), (out / "manipulate" / "sweeps.png",
                                                                         "manipulate.png")):
        if src.is_file():
            shutil.copyfile(src, figs / name)
    for extra in ("decomposition.json",):
        shutil.copyfile(dec / extra, ship / extra)
    shutil.copyfile(out / "segment" / "segment.json", ship / "segment.json")
    j, sp = summary.get("judge") or {}, summary["spatial"]
    numbers = {
        "val images decomposed": summary["images"],
        "transfer accuracy (judge)": j.get("transfer_accuracy"),
        "judge accuracy on the inputs": j.get("judge_accuracy_inputs"),
        "own-domain PSNR / R alone (dB)": f"{j.get('psnr_own', float('nan')):.2f} / "
                                          f"{j.get('psnr_residual_only', float('nan')):.2f}",
        "mean |correlation| between branches": round(summary["mean_abs_correlation"], 3),
        "active / silent branches": f"{summary['active']} / {summary['silent']}",
        "border ratio mean / worst (1 = no frame)": f"{sp['border_ratio_mean']:.2f} / {sp['border_ratio_max']:.2f}",
        "App. F: eye pairs found": f"{seg['pairs_found']} of {seg['images']}",
    }
    if seg.get("on_eyes_fraction") is not None:
        numbers["App. F: kept pair on the true eyes"] = f"{seg['on_eyes']} of {seg['marked_images']}"
        for name, flags in (("segment-energy", ENERGY), ("segment-variant", VARIANT)):
            var = json.loads((out / name / "segment.json").read_text())
            numbers[f"App. F variant ({' '.join(flags)}): kept pair on the true eyes"] = \
                f"{var['on_eyes']} of {var['marked_images']}"
    cmd = f"python scripts/photo_gan_ship.py {' '.join(sys.argv[1:])}"
    doc = {
        "title": f"shipped {ship.name}",
        "numbers": numbers,
        "notes": [f"Measured on the first {args.per_domain} val images of every domain of {args.data}."],
        "figures": [
            {"file": "figures/grid.png", "section": "decomposition", "command": cmd,
             "caption": "val images: input, re-generation, R and the M components (paper Figs. 10–11, 18–20)."},
            {"file": "figures/transfer.png", "section": "decomposition", "command": cmd,
             "caption": "class transfer G(x, ỹ) of val images to every domain, labelled by the judge."},
            {"file": "figures/profiles.png", "section": "decomposition", "command": cmd,
             "caption": "per-branch energy share, frequency, chroma and spatial entropy."},
            {"file": "figures/segment.png", "section": "apps", "command": cmd,
             "caption": "App. F eye segmentation with the automatic component choice on val images."},
            {"file": "figures/manipulate.png", "section": "apps", "command": cmd,
             "caption": "App. A: α-sweeps x(α) = R + Σ_{j≠k} v_j + α·v_k (α = −1 … 3) of "
                        + (f"component v{args.component}" if args.component is not None else
                           "each image's strongest component") + "."},
        ],
    }
    doc["figures"] = [f for f in doc["figures"] if (ship / f["file"]).is_file()]
    (ship / "shipped.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(numbers, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
