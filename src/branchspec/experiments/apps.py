"""Using a decomposition (§7): manipulation (App. A, Figs. 13–15), augmentation, segmentation (App. F, Fig. 21).

``run`` reads one decomposition ``.npz`` (written by the GAN experiment /
``branchspec decompose``; none of the parts needs the generator) and writes
under ``out``: α-sweeps, subset sums and gains (:func:`branchspec.apps.manipulation.manipulate`),
component-augmented samples (:func:`branchspec.apps.augment.augment_samples`)
and a Chan–Vese segmentation (:func:`branchspec.apps.segmentation.segment`),
with their figures drawn from the saved arrays. Each part is optional. With
``folder`` it runs segmentation and manipulation on every decomposition of a
folder instead, with montages (:mod:`branchspec.experiments.apps_folders`): the
one path of ``branchspec segment`` / ``manipulate``, a file or a folder, and of the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from branchspec.apps.manipulation import check_indices, parse_alphas, parse_gains, parse_indices
from branchspec.apps.segmentation import LOCATOR_CHOICES, MAX_ENERGY_SIGMA, PAIR_RULES, SEGMENT_ON, SegmentConfig
from branchspec.apps.spatial import eye_marks
from branchspec.errors import ConfigError
from branchspec.experiments import common, shipped
from branchspec.options import api_only, check_fields, option
from branchspec.report import Figure, Section

NAME = "apps"
ALPHAS = "-1:3:9"  # the sweep's α: START:STOP:COUNT
MAX_COMPONENTS = 4096  # index lists are parsed against this, then checked against a decomposition's own M
GIFS = ("all", "strongest", "none")  # sweep GIFs: every component's, the one of most energy, none
_S = SegmentConfig()


def _indices(text: str) -> tuple[int, ...]:
    return tuple(parse_indices(text, MAX_COMPONENTS))


def _index_union(texts: list[str]) -> tuple[int, ...]:
    """``--component`` given once or more, each a comma list: the indices, sorted, once each."""
    return tuple(sorted({k for text in texts for k in parse_indices(text, MAX_COMPONENTS)}))


def _index_lists(texts: list[str]) -> tuple[tuple[int, ...], ...]:
    return tuple(_indices(text) for text in texts)


def _alphas(text: str) -> tuple[float, ...]:
    return tuple(parse_alphas(text))


def _gains(text: str) -> tuple[float, ...]:
    return tuple(parse_gains(text, None))


@dataclass(frozen=True)
class Manipulate:
    """App. A; each option is one ``branchspec manipulate`` flag."""

    components: tuple[int, ...] | None = option(None, "component(s) to sweep, repeatable or comma-separated",
                                                flag="--component", metavar="K", many="append", parse=_index_union,
                                                default_help="all")
    alphas: tuple[float, ...] = option(_alphas(ALPHAS), "START:STOP:COUNT or a comma list; write --alphas=-1:3:9 "
                                                        "when it starts with '-'", parse=_alphas, default_help=ALPHAS)
    subsets: tuple[tuple[int, ...], ...] | str = option(
        (), "component subsets to sum, e.g. 0,3,5 1,2", metavar="I,J,...", many="+",
        parse=_index_lists)  # the API's "thirds": the strongest third of the components vs the rest
    gains: tuple[float, ...] | None = option(None, "one gain per component: R + sum_k g_k v_k; write --gains=-1,0,2 "
                                                   "when it starts with '-'", metavar="G0,G1,...", parse=_gains)
    gif: str = option("all", "skip the animated GIFs", flag="--no-gif", const="none",
                      choices=GIFS)  # the API's "strongest": the component of most energy only; a folder: none
    folder: str = api_only("manipulation", "under out (\"\" = out itself)")

    def __post_init__(self) -> None:
        check_fields(self)  # gif among GIFS
        if isinstance(self.subsets, str) and self.subsets != "thirds":
            raise ConfigError("subsets", f"a tuple of index tuples or 'thirds', got {self.subsets!r}")

    def check(self, m: int) -> None:
        """Every index names one of the decomposition's M components, and there is one gain per component."""
        if self.components is not None:
            check_indices(self.components, m, "components")
        for s in () if isinstance(self.subsets, str) else self.subsets:
            check_indices(s, m, "subsets")
        if self.gains is not None and len(self.gains) != m:
            raise ConfigError("gains", f"need {m} finite gains (one per component), got {len(self.gains)}")

    def check_folder(self) -> None:
        """A folder of decompositions takes one sweep component and no per-component gains."""
        if self.gains is not None:
            raise ConfigError("gains", "one gain per component fits one decomposition, not a folder")
        if self.components is not None and len(self.components) > 1:
            raise ConfigError("components", "a folder takes one component K (one sweep row per image)")


@dataclass(frozen=True)
class Augment:
    """Component augmentation R + Σ g_k v_k, g_k ~ U[1 − s, 1 + s] (beyond the paper)."""

    gain_range: float = 0.5
    samples: int = 6
    seed: int = 0


@dataclass(frozen=True)
class Segment:
    """App. F; each option is one ``branchspec segment`` flag (the Chan–Vese defaults: :class:`SegmentConfig`'s)."""

    locators: tuple[int, ...] | None = option(None, "locator component(s)", flag="--locator", metavar="I,J",
                                              parse=_indices, default_help="automatic")
    target: int | None = option(None, "component to segment", metavar="K", default_help="automatic")
    truth: str = option("", "ground-truth mask (non-zero = eye) for Dice / IoU", metavar="MASK.png")
    mu: float = option(_S.mu, "Chan-Vese length penalty")
    iterations: int = option(_S.max_num_iter, "Chan-Vese iterations")
    folder: str = api_only("segmentation", "under out (\"\" = out itself)")
    on: str = option(_S.segment_on, "what Chan-Vese segments: the target's Value channel (App. F) or the locators' "
                                    "energy (beyond the paper: for small images whose eyes are a few pixels of "
                                    "strokes)", choices=SEGMENT_ON)
    energy_sigma: float = option(_S.energy_sigma, "Gaussian smoothing of the locator energy in pixels (0: none, the "
                                                  "paper)", metavar="PX")
    pair_rule: str = option(_S.pair_rule, "regions kept: 'rows' = those with row-wise multiplicity 2 (App. F); "
                                          "'strongest' = where that keeps other than one pair, the two regions "
                                          "sharing rows with the most locator energy (beyond the paper)",
                            choices=PAIR_RULES)
    choose_locators: str = option("image", "folder mode, automatic locators: 'image' = each image's own by peak "
                                           "ratio (App. F); 'folder' = the same two for every image, the components "
                                           "whose energy most often yields one pair by App. F's row rule (beyond "
                                           "the paper)", choices=LOCATOR_CHOICES)
    eyes: dict | None = option(None, "folder mode: count the images whose kept pair lies on the true eyes — "
                                     "'aligned-face' (the eye centres of utkface-128's mean face) or a JSON {image "
                                     "name: [[row, col], [row, col]]} of marked centres, fractions of the side",
                               metavar="aligned-face|MARKS.json", parse=eye_marks)
    progress: bool = api_only(False, "a folder run: a progress bar over the images")

    def __post_init__(self) -> None:
        check_fields(self)  # on among SEGMENT_ON, finite floats
        if not self.mu >= 0:
            raise ConfigError("mu", f"must be >= 0, got {self.mu}")
        if self.iterations < 1:
            raise ConfigError("iterations", f"must be >= 1, got {self.iterations}")
        if not 0 <= self.energy_sigma <= MAX_ENERGY_SIGMA:
            raise ConfigError("energy_sigma", f"must lie in [0, {MAX_ENERGY_SIGMA:g}] px, got {self.energy_sigma}")
        if self.target is not None and self.target < 0:
            raise ConfigError("target", f"component {self.target} must be >= 0")

    def check(self, m: int) -> None:
        """The locators and the target name components of a decomposition of M."""
        if self.locators is not None:
            check_indices(self.locators, m, "locators")
        if self.target is not None and not 0 <= self.target < m:
            raise ConfigError("target", f"component {self.target} out of range 0..{m - 1}")

    def check_folder(self) -> None:
        """A folder of decompositions has no one ground-truth mask."""
        if self.truth:
            raise ConfigError("truth", "one mask fits one image; give a single decomposition with a truth mask")

    def check_file(self) -> None:
        """One decomposition has no folder to choose locators from."""
        if self.choose_locators == "folder":
            raise ConfigError("choose_locators", "'folder' chooses from a folder of decompositions; give one")


@dataclass(frozen=True)
class Config:
    decomposition: str = ""  # a decomposition .npz …
    search: str = ""  # … or a folder of them: a cat's is preferred (App. F), else the first
    folder: str = ""  # … or a folder whose every decomposition is segmented / manipulated (montages; no augment)
    manipulate: Manipulate | None = None
    augment: Augment | None = None
    segment: Segment | None = None
    shipped: tuple[str, ...] = ()  # shipped generators' folders (shipped.json): their App. A/F figures join the section


def pick(cfg: Config) -> Path:
    """The decomposition ``cfg`` names (a cat's when searching a folder)."""
    if cfg.decomposition:
        return Path(cfg.decomposition)
    paths = sorted(Path(cfg.search).glob("*.npz")) if cfg.search else []
    if not paths:
        raise ConfigError("decomposition", f"no decomposition given and no {Path(cfg.search or '.')}/*.npz; run the "
                          "demo's decomposition part first", usage=False)
    return next((p for p in paths if "cat" in p.stem or "chelsea" in p.stem), paths[0])


def _sub(out: Path, folder: str) -> Path:
    return out / folder if folder else out


def run(cfg: Config, out) -> dict:
    """Manipulate, augment and segment one decomposition under ``out``; returns the summary (also saved)."""
    from branchspec.apps.batch import default_subsets
    from branchspec.apps.components import Decomposition, to_unit

    out = Path(out)
    if cfg.folder:
        from branchspec.experiments.apps_folders import run_folder

        if cfg.augment is not None:
            raise ConfigError("augment", "component augmentation takes one decomposition, not a folder")
        return common.save(out, NAME, cfg, run_folder(cfg.folder, out, cfg.segment, cfg.manipulate))
    src = pick(cfg)
    dec = Decomposition.load(src)
    energy = dec.energies()  # (M,)
    order = [int(k) for k in np.argsort(-energy)]
    summary: dict = {"decomposition": str(src), "components": dec.num_components, "strongest": order[0]}
    for part in (cfg.manipulate, cfg.segment):
        if part is not None:
            part.check(dec.num_components)
    if cfg.segment is not None:
        cfg.segment.check_file()  # a locator choice over a folder needs a folder
    if (mc := cfg.manipulate) is not None:
        from branchspec.apps.manipulation import manipulate, sweep, write_gif
        from branchspec.figures.apps import draw_manipulation

        subsets = default_subsets(dec) if mc.subsets == "thirds" else mc.subsets
        dest = _sub(out, mc.folder)
        doc = manipulate(dec, dest, mc.components, list(mc.alphas), [list(s) for s in subsets], mc.gains,
                         gif=mc.gif == "all")
        files = doc["files"] + [p.name for p in draw_manipulation(dest)]
        if mc.gif == "strongest":
            gif = write_gif(to_unit(sweep(dec, order[0], mc.alphas), dec.value_range), dest / f"sweep_{order[0]}.gif")
            files.append(gif.name)
        summary["manipulation"] = {"folder": str(dest), "files": files, "alphas": list(mc.alphas),
                                   "subsets": [list(s) for s in subsets]}
    if (ac := cfg.augment) is not None:
        from branchspec.apps.augment import augment_samples
        from branchspec.figures.apps import augment_figure

        augment_samples(dec, ac.gain_range, n=ac.samples, seed=ac.seed, out_npz=out / "augment.npz")
        augment_figure(out / "augment.npz", out / "augment.png")
        summary["augment"] = {"npz": str(out / "augment.npz"), "figure": str(out / "augment.png")}
    if (sc := cfg.segment) is not None:
        summary["segmentation"] = _segment(dec, sc, _sub(out, sc.folder))
    if cfg.shipped:
        summary["shipped"] = shipped.copy_all(cfg.shipped, out, NAME)
    return common.save(out, NAME, cfg, summary)


def _segment(dec, sc: Segment, dest: Path) -> dict:
    from branchspec.apps.segmentation import load_mask, save_segmentation, segment
    from branchspec.experiments.apps_folders import segment_config
    from branchspec.figures.apps import segmentation_figure

    truth, resized = None, False
    if sc.truth:
        truth, resized = load_mask(sc.truth, dec.R.shape[1:], "truth")
    res = segment(dec, list(sc.locators) if sc.locators is not None else None, sc.target, segment_config(sc))
    doc = save_segmentation(dec, res, dest, truth)
    segmentation_figure(dest / "segment.npz", dest / "segmentation.png")
    return {"folder": str(dest), "locators": res.locators, "target": res.target, "regions": res.regions,
            "kept": res.kept, "mask_pixels": doc["mask_pixels"], "dice": doc.get("dice"), "iou": doc.get("iou"),
            "automatic": bool(res.automatic["locators"] or res.automatic["target"]), "truth_resized": resized}


def section(out) -> Section:
    """The report section "apps" from the files a :func:`run` saved under ``out``."""
    out = Path(out)
    cfg, summary = common.load(out)
    rel = lambda p: common.relative(out, p)  # noqa: E731
    src, k = summary["decomposition"], summary["strongest"]
    figures, numbers = [], {"decomposition used": Path(src).name, "components": summary["components"],
                            "strongest component (energy)": f"v{k}"}
    if (m := summary.get("manipulation")) is not None:
        d, a, sub = Path(m["folder"]), m["alphas"], m["subsets"]
        cmd = (f"branchspec manipulate {src} --alphas={a[0]:g}:{a[-1]:g}:{len(a)}"
               + (f" --subsets {' '.join(','.join(map(str, s)) for s in sub)}" if sub else "") + f" --out {d}")
        figures.append(Figure(rel(d / "strip.png"), "α-sweeps x(α) = R + Σ_{j≠k} v_j + α·v_k, one row per "
                              "component (paper App. A, Figs. 13–14).", cmd))
        if f"sweep_{k}.gif" in m["files"]:
            figures.append(Figure(rel(d / f"sweep_{k}.gif"), f"The sweep of the strongest component v{k} as an "
                                  "animation.", cmd))
        if "subsets.png" in m["files"]:
            figures.append(Figure(rel(d / "subsets.png"), "Subset sums R + Σ_{k∈S} v_k: the strongest third of the "
                                  "components vs the rest (Fig. 15).", cmd))
    if (a := summary.get("augment")) is not None:
        s = cfg["augment"]["gain_range"]
        figures.append(Figure(rel(a["figure"]), f"Component augmentation: R + Σ g_k v_k with g_k ~ U[{1 - s:g}, "
                              f"{1 + s:g}] (beyond the paper, §7).",
                              f"branchspec.apps.augment.ComponentAugment({s:g}, seed={cfg['augment']['seed']})"))
    if (g := summary.get("segmentation")) is not None:
        d = Path(g["folder"])
        figures.append(Figure(rel(d / "segmentation.png"), "App. F procedure (Fig. 21): locator component and "
                              "initial region, target component, Chan–Vese, regions kept by the row-wise pair rule.",
                              f"branchspec segment {src} --out {d}"))
        how = "automatic" if g["automatic"] else "given"
        numbers[f"segmentation: locators / target ({how})"] = f"{g['locators']} / {g['target']}"
        numbers["segmentation: regions found / kept as pairs"] = f"{g['regions']} / {g['kept']}"
        numbers["segmentation: mask pixels"] = g["mask_pixels"]
    notes = [
        "All panels are computed from the saved decomposition .npz; none needs the generator.",
        "The demo's generator is tiny and trained for minutes on a handful of photographs, so its components are "
        "far less specialised than the paper's 256² AFHQ model: the segmentation shows the mechanics of App. F, "
        "not eyes found on a real cat face (there is no ground truth here; see tests/test_apps.py for the "
        "constructed cases with a known answer).",
    ]
    return shipped.with_shipped(Section(
        key=NAME, title="Using the decomposition: manipulation, augmentation, segmentation",
        intro="Ambient-space editing (App. A), component augmentation and unsupervised segmentation (App. F) on a "
              "decomposition from the previous section.",
        numbers=numbers, figures=figures, notes=notes), summary.get("shipped", []), out)
