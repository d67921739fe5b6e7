"""Demo part "apps": manipulation, augmentation and segmentation of the demo's own decomposition.

Reads the decompositions written by the "decomposition" part
(``ctx["decompositions"]``, else ``out_dir/decomposition/*.npz``) and writes
under ``out_dir/apps/``: an α-sweep strip and GIF (App. A, Figs. 13–14),
subset sums (Fig. 15), component-augmented samples (§7) and a Chan–Vese
segmentation (App. F, Fig. 21).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from branchspec.errors import BranchspecError
from branchspec.report import Figure, Section


def _decompositions(out_dir: Path, ctx: dict) -> list[Path]:
    paths = [Path(p) for p in ctx.get("decompositions", []) if Path(p).is_file()]
    if not paths:
        paths = sorted((out_dir / "decomposition").glob("*.npz"))
    if not paths:
        raise BranchspecError(
            f"the apps part needs decompositions: none in ctx and no {out_dir / 'decomposition'}/*.npz; "
            "run the decomposition part first (branchspec demo --parts decomposition,apps)"
        )
    return paths


def _pick(paths: list[Path]) -> Path:
    """Prefer an image of the cat (the embedded data's cat photo) for App. F, else the first."""
    for p in paths:
        if "cat" in p.stem or "chelsea" in p.stem:
            return p
    return paths[0]


def run(out_dir, ctx: dict, quick: bool = False) -> Section:
    from branchspec.apps.augment import augment_samples
    from branchspec.apps.components import Decomposition, to_unit
    from branchspec.apps.manipulation import manipulate, sweep, write_gif
    from branchspec.apps.segmentation import save_segmentation, segment
    from branchspec.figures.apps import augment_figure, draw_manipulation, segmentation_figure

    out_dir = Path(out_dir)
    dest = out_dir / "apps"
    dest.mkdir(parents=True, exist_ok=True)
    src = _pick(_decompositions(out_dir, ctx))
    dec = Decomposition.load(src)
    m = dec.num_components
    energy = (dec.components.astype(np.float64) ** 2).sum(axis=(1, 2, 3))  # (M,)
    order = [int(k) for k in np.argsort(-energy)]
    strongest = order[0]
    alphas = [-1.0, 0.0, 1.0, 2.0, 3.0] if quick else [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    half = max(1, m // 3)
    subsets = [sorted(order[:half]), sorted(order[half:])] if m > 1 else [[0]]
    doc = manipulate(dec, dest / "manipulation", None, alphas, subsets, gif=False)
    draw_manipulation(dest / "manipulation")
    write_gif(to_unit(sweep(dec, strongest, alphas), dec.value_range), dest / "manipulation" / f"sweep_{strongest}.gif")
    s = 0.5
    augment_samples(dec, s, n=4 if quick else 6, seed=0, out_npz=dest / "augment.npz")
    augment_figure(dest / "augment.npz", dest / "augment.png")
    res = segment(dec)
    seg = save_segmentation(dec, res, dest / "segmentation")
    segmentation_figure(dest / "segmentation" / "segment.npz", dest / "segmentation" / "segmentation.png")
    rel = lambda p: str(Path("apps") / p)  # noqa: E731
    cmd_m = f"branchspec manipulate {src} --alphas={alphas[0]:g}:{alphas[-1]:g}:{len(alphas)} " \
            f"--subsets {','.join(map(str, subsets[0]))} {','.join(map(str, subsets[-1]))} --out {dest / 'manipulation'}"
    cmd_s = f"branchspec segment {src} --out {dest / 'segmentation'}"
    figures = [
        Figure(rel("manipulation/strip.png"),
               "α-sweeps x(α) = R + Σ_{j≠k} v_j + α·v_k, one row per component (paper App. A, Figs. 13–14).", cmd_m),
        Figure(rel(f"manipulation/sweep_{strongest}.gif"),
               f"The sweep of the strongest component v{strongest} as an animation.", cmd_m),
        Figure(rel("manipulation/subsets.png"),
               "Subset sums R + Σ_{k∈S} v_k: the strongest third of the components vs the rest (Fig. 15).", cmd_m),
        Figure(rel("augment.png"),
               f"Component augmentation: R + Σ g_k v_k with g_k ~ U[{1 - s:g}, {1 + s:g}] (beyond the paper, §7).",
               "branchspec.apps.augment.ComponentAugment(0.5, seed=0)"),
        Figure(rel("segmentation/segmentation.png"),
               "App. F procedure (Fig. 21): locator component and initial region, target component, Chan–Vese, "
               "regions kept by the row-wise pair rule.", cmd_s),
    ]
    numbers = {
        "decomposition used": src.name,
        "components": m,
        "strongest component (energy)": f"v{strongest}",
        "segmentation: locators / target (automatic)": f"{res.locators} / {res.target}",
        "segmentation: regions found / kept as pairs": f"{res.regions} / {res.kept}",
        "segmentation: mask pixels": seg["mask_pixels"],
    }
    notes = [
        "All panels are computed from the saved decomposition .npz; none needs the generator.",
        "The demo's generator is tiny and trained for minutes on a handful of photographs, so its components are "
        "far less specialised than the paper's 256² AFHQ model: the segmentation shows the mechanics of App. F, "
        "not eyes found on a real cat face (there is no ground truth here; see tests/test_apps.py for the "
        "constructed cases with a known answer).",
    ]
    ctx["apps"] = {"manipulation": doc, "segmentation": seg}
    return Section(key="apps", title="Using the decomposition: manipulation, augmentation, segmentation",
                   intro="Ambient-space editing (App. A), component augmentation and unsupervised "
                         "segmentation (App. F) on a decomposition from the previous section.",
                   numbers=numbers, figures=figures, notes=notes)
