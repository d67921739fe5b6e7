"""The branched class-transfer GAN of §7 (App. E) and the decomposition of images by its branches (Figs. 10–11).

``run`` trains :func:`branchspec.gan.train.train_gan` (optionally in chunks
of steps sized to a time budget, each resuming exactly, as the demo does on
slow machines), then, with a :class:`Decompose`, splits images into the
generator's components f = R + Σ_k v_k (:func:`branchspec.apps.decompose.decompose_images`:
per image an NPZ, over all of them ``decomposition.json``) and draws the grid,
correlation, profile and added-component figures from those files. Either
part may be left out: ``train=None`` decomposes with an existing checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from branchspec.apps.judge import judge_numbers
from branchspec.apps.memory import check_decompose
from branchspec.errors import BranchspecError, ConfigError, DataError
from branchspec.experiments import common, shipped
from branchspec.io import atomic_write_via
from branchspec.models.generator import GeneratorConfig
from branchspec.options import api_only, check_fields, option
from branchspec.report import Figure, Section
from branchspec.gan.config import GanTrainConfig
from branchspec.seeds import derive_seed

NAME = "decomposition"  # the report section's key (ORDER in branchspec.report)


def check_img_size(size: object) -> int:
    """``size`` if it is an image side the generator takes: a power of two in [8, 1024] (it halves the side)."""
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 1024 or size & (size - 1):
        raise ConfigError("img_size", f"must be a power of two in [8, 1024] (the generator halves it), got {size!r}")
    return size


@dataclass(frozen=True)
class Decompose:
    """Decomposing images; each option is one ``branchspec decompose`` flag."""

    checkpoint: str = option("", "generator checkpoint (NAME, NAME.json or NAME.safetensors)", required=True,
                             metavar="CKPT")  # the API's "": the run this experiment trained
    images: tuple[str, ...] = option((), "image files and/or folders (searched recursively)", flag="IMAGE_OR_FOLDER",
                                     many="*", parse=tuple)
    held_out: bool = option(False, "also decompose the images the checkpoint's training run held out (train-gan "
                                   "--holdout)")
    crops_per_domain: int = api_only(0, "> 0: also new random crops of the embedded photographs (another seed)")
    crop_seed: int | None = api_only(None, "their seed; None = derived from the training seed")
    domain: str | None = option(None, "target domain for every image", default_help="the image's folder name",
                                metavar="NAME")
    img_size: int | None = option(None, "resize to S×S", default_help="the checkpoint's img_size", metavar="S")
    batch_size: int = option(8, "images per generator pass")
    grid_rows: int = option(8, "images shown in grid.png")
    grid_per_domain: int = api_only(0, "when > 0, grid.png shows up to this many of each domain (Figs. 10-11)")
    png_min_size: int = api_only(0, "PNGs upscaled to at least this side")
    judge: str = option("", "score class transfer with a branchspec train-classifier checkpoint whose classes "
                            "include the generator's domains: transfer accuracy and lift, source retention, "
                            "own-domain PSNR/SSIM vs R, per-branch input dependence (written to decomposition.json "
                            "under 'judge')", metavar="CLASSIFIER_CKPT")
    judge_data: str = option("", "images the judge scores: a CIFAR-10 folder (its test split, the generator's "
                                 "classes) or an image-folder ROOT (ROOT/val, ROOT/test or ROOT/train)",
                             default_help="the decomposed images", metavar="SPEC")
    judge_max: int = option(400, "at most N images for the judge")
    face_regions: bool = option(False, "aligned faces: also each component's energy share in eyes, mouth, hair and "
                                       "background")
    device: str = option("cpu", "torch device")
    progress: bool = api_only(True, "a progress bar")

    def __post_init__(self) -> None:
        check_fields(self)  # finite floats
        for name in ("batch_size", "grid_rows", "judge_max"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("crops_per_domain", "grid_per_domain", "png_min_size"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.img_size is not None:
            check_img_size(self.img_size)
        if self.judge_data and not self.judge:
            raise ConfigError("judge_data", "give `judge` (a classifier checkpoint) as well")
        if not (self.images or self.held_out or self.crops_per_domain):
            raise ConfigError("images", "give images or folders to decompose (or `held_out`)")


@dataclass(frozen=True)
class Config:
    """Training and / or decomposition."""

    train: GanTrainConfig | None = None
    run_folder: str = ""  # training goes to out/<run_folder> ("" = out)
    resume: bool = False
    time_budget_s: float = 0.0  # > 0: train in chunks until train.steps or this much time
    chunk: int = 50  # at most this many steps between time checks
    progress: bool = True
    decompose: Decompose | None = None
    shipped: tuple[str, ...] = ()  # shipped generators' folders (shipped.json): their figures join the section


def train(cfg: Config, run_dir: Path) -> tuple[Path, int, float]:
    """Train ``cfg.train`` into ``run_dir``; returns (checkpoint, steps done, seconds)."""
    from branchspec.gan.train import train_gan

    tc = cfg.train
    t0 = time.perf_counter()
    if cfg.time_budget_s <= 0:
        ckpt = train_gan(tc, run_dir, progress=cfg.progress, resume=cfg.resume)
        return ckpt, tc.steps, time.perf_counter() - t0
    steps, ckpt, n = 0, None, min(5, cfg.chunk)  # a short first chunk measures the speed
    while steps < tc.steps and n >= 1:
        steps = min(tc.steps, steps + n)
        ckpt = train_gan(replace(tc, steps=steps), run_dir, progress=cfg.progress,
                         resume=cfg.resume or ckpt is not None)
        spent = time.perf_counter() - t0
        n = min(cfg.chunk, int((cfg.time_budget_s - spent) / (spent / steps)))  # steps that still fit
    return ckpt, steps, time.perf_counter() - t0


def decompose(d: Decompose, out: Path, checkpoint: str, seed: int = 0) -> dict:
    """Decompose the images ``d`` names with the generator ``checkpoint``; figures and judge; the summary."""
    from branchspec.apps.decompose import decompose_images, find_images, image_domain, load_generator
    from branchspec.experiments.gan_inputs import held_out_files, judge_images, write_crops
    from branchspec.figures.decomposition import added_rows, correlation_figure, decomposition_grid, profile_figure

    paths = find_images(d.images, "images") if d.images else []
    gen, domains, ckpt_size, vr, state = load_generator(checkpoint, d.device, "checkpoint")
    if d.held_out:
        paths += held_out_files(state, checkpoint)
    size = d.img_size if d.img_size is not None else ckpt_size
    if size is None:
        raise ConfigError("img_size", "the checkpoint does not record its image size; give it")
    check_img_size(size)
    config = state["model"]["config"] if state["model"]["kind"] == "generator" else None  # not another kind's
    smallest = GeneratorConfig(**{"padding": "zeros", **config}).min_img_size if config else 8
    if size < smallest:
        raise ConfigError("img_size", f"{size} is too small for this generator: its bottleneck needs `img_size` >= "
                                      f"{smallest}")
    check_decompose(gen, config, size, d.batch_size)  # one pass of batch_size images fits the memory budget
    if d.crops_per_domain > 0:
        crop_seed = derive_seed(seed, "held-out-crops") if d.crop_seed is None else d.crop_seed
        paths += write_crops(int(size), d.crops_per_domain, crop_seed, out / "heldout")
    for p in paths:  # every domain problem before any work
        image_domain(Path(p), domains, d.domain, "domain")
    judge = None
    if d.judge:  # every judge problem before any work
        from branchspec.apps.judge import ClassifierJudge

        judge = ClassifierJudge.from_checkpoint(d.judge, domains, d.device, vr, "judge")
        x, y = judge_images(d.judge_data, paths, domains, int(size), vr, d.judge_max)
    t0 = time.perf_counter()
    res = decompose_images(gen, paths, out, domains, img_size=int(size), domain=d.domain, batch_size=d.batch_size,
                           value_range=vr, png_min_size=d.png_min_size, progress=d.progress, device=d.device,
                           face_regions=d.face_regions)
    seconds = time.perf_counter() - t0
    if not res.npz:
        raise DataError(f"no image could be read ({len(res.skipped)} skipped); see {res.json_path}")
    if d.grid_per_domain > 0:  # up to N images of each domain, like Figs. 10–11 / 18–20
        by_dom: dict[str, list[Path]] = {}
        for p in res.npz:
            by_dom.setdefault(p.stem.split("_")[0], []).append(p)
        rows = [p for dom in domains for p in by_dom.get(dom, [])[:d.grid_per_domain]]
        title = "input, re-generation, R, v0…v%d (stretched)" % (gen.num_branches - 1)
        decomposition_grid(rows, out / "grid.png", title=title)
    else:
        rows = res.npz[:d.grid_rows]
        decomposition_grid(rows, out / "grid.png")
    correlation_figure(res.json_path, out / "correlation.png")
    added_rows(rows[0], out / "added.png")
    summary = {"checkpoint": str(checkpoint), "img_size": int(size), "domains": domains, "seconds": round(seconds, 1),
               "npz": [str(p) for p in res.npz], "json": str(res.json_path), "decomposition": dict(res.summary)}
    if judge is not None:
        from branchspec.apps.decompose import add_to_summary
        from branchspec.apps.judge import judge_generator, transfer_examples
        from branchspec.figures.gan import transfer_grid

        j = judge_generator(gen, judge, x, y, batch_size=d.batch_size, value_range=vr)
        j.update({"classifier": str(d.judge), "data": d.judge_data or "the decomposed images"})
        add_to_summary(res.json_path, "judge", j)
        summary["judge"] = j
        examples = transfer_examples(gen, judge, x, y, per_domain=2, value_range=vr)
        atomic_write_via(out / "transfer.npz", lambda buf: np.savez(buf, **examples))
        transfer_grid(out / "transfer.npz", domains, out / "transfer.png")
    profile_figure(res.json_path, out / "profiles.png")
    return summary


def run(cfg: Config, out) -> dict:
    """Train and / or decompose as ``cfg`` says, under ``out``; returns the summary (also saved)."""
    out = Path(out)
    summary: dict = {}
    ckpt = ""
    if cfg.train is not None:
        run_dir = out / cfg.run_folder if cfg.run_folder else out
        last, steps, secs = train(cfg, run_dir)
        ckpt = str(last)
        summary["train"] = {"checkpoint": ckpt, "steps": steps, "seconds": round(secs, 1)}
    if cfg.decompose is not None:
        seed = cfg.train.seed if cfg.train else 0
        summary.update(decompose(cfg.decompose, out, cfg.decompose.checkpoint or ckpt, seed))
    if cfg.shipped:
        summary["shipped"] = shipped.copy_all(cfg.shipped, out, NAME)
    return common.save(out, NAME, cfg, summary)


def section(out) -> Section:
    """The report section "decomposition" from the files a :func:`run` saved under ``out``."""
    out = Path(out)
    cfg, summary = common.load(out)
    t, d, s = cfg["train"], cfg["decompose"], summary["decomposition"]
    rel = lambda name: common.relative(out, out / name)  # noqa: E731
    src = f"{out / 'heldout'}" if d["crops_per_domain"] else " ".join(d["images"])
    cmd = f"branchspec decompose --checkpoint {summary['checkpoint']} {src} --out {out}"
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    numbers = {}
    if t:
        numbers["training steps (of at most %d)" % t["steps"]] = summary["train"]["steps"]
        numbers["training time (s)"] = summary["train"]["seconds"]
    numbers.update({
        "image size": f"{summary['img_size']}×{summary['img_size']}",
        "branches M": s["branches"],
        "held-out images decomposed": s["images"],
        "skipped (unreadable)": s["skipped"],
        "PSNR re-generation vs input (dB)": fmt(s.get("psnr"), ".2f"),
        "SSIM re-generation vs input": fmt(s.get("ssim"), ".3f"),
        "PSNR of R alone (dB)": fmt(s.get("psnr_residual_only"), ".2f"),
        "SSIM of R alone": fmt(s.get("ssim_residual_only"), ".3f"),
        "mean |correlation| between branch outputs": round(s["mean_abs_correlation"], 3),
        "mean |Pearson correlation| (centred)": round(s["mean_abs_pearson"], 3),
        "active / silent branches": f"{s['active']} / {s['silent']}",
        "max |R + Σ v_k − output|": f"{s['max_reconstruction_error']:.2e}",
        "border ratio, mean / worst branch (1 = no frame)": (
            f"{s['spatial']['border_ratio_mean']:.2f} / {s['spatial']['border_ratio_max']:.2f}" if "spatial" in s else "n/a"),
        "decomposition time (s)": summary["seconds"],
    })
    numbers.update(judge_numbers(s.get("judge")))  # transfer accuracy etc. when the decomposition was judged
    figures = [
        Figure(rel("grid.png"), "Held-out crops: input, re-generation, R and the M branch outputs with increased "
               "contrast (0.5 + v/(2·p99|v|), zero = grey), like paper Figs. 10–11 and 18–20.", cmd),
        Figure(rel("added.png"), "Top: branch outputs (stretched); bottom: each added to the re-generation without "
               "amplification (paper Fig. 10, bottom row).", cmd),
        Figure(rel("correlation.png"), "|correlation| between branch outputs over all held-out images and each "
               "branch's energy share; grey bars are silent branches (§4 metrics on generator outputs, Fig. 5).", cmd),
        Figure(rel("profiles.png"), "Per-branch component profiles (beyond the paper): energy share, radial-frequency "
               "centroid, chroma fraction and spatial entropy of each branch's energy — what makes one component "
               "different from another, as numbers.", cmd),
    ]
    if (out / "transfer.png").is_file():  # the decomposition was judged
        figures.append(Figure(rel("transfer.png"), "Class transfer G(x, ỹ) of judged images to every domain, each "
                              "labelled with the judge's call (green: the target).", cmd + f" --judge {d['judge']}"))
    notes = []
    if t:
        notes += [
            f"Training: train_gan on {t['data']} data ({2 * t['n_per_domain']} random crops of scikit-image's "
            f"photographs when embedded: cat: chelsea; other: astronaut, coffee, rocket, motorcycle), {t['steps']} "
            f"steps at most" + (f" or {cfg['time_budget_s']:.0f} s" if cfg["time_budget_s"] > 0 else "")
            + f", batch {t['batch_size']}, {t['residual'].capitalize()} R, {t['engine']} engine, {t['device']}.",
            f"Training targets: the image's own domain with probability {t['same_domain']:g} (train-gan "
            "--same-domain); the paper draws targets uniformly (class transfer). Decomposition uses the own domain, "
            "and on this short budget own-domain training gave markedly more faithful re-generations "
            "(docs/decompose.md).",
            "Losses: adversarial + R1 (App. E)"
            + "".join(f", {w:g} × {name} (train-gan {flag}; not in the paper, docs/gan.md run 8)"
                      for flag, name, w in (("--cls-weight", "the domain-classifier loss", t.get("cls_weight", 0.0)),
                                            ("--rec-weight", "the L1 re-generation loss on own-domain targets",
                                             t.get("rec_weight", 0.0))) if w)
            + (", G's style from (source, target) pairs (train-gan --source-aware; not in the paper)"
               if t.get("source_aware") else "") + ".",
        ]
    if d["crops_per_domain"]:
        notes.append("Held-out = new random crops (another seed) of the same five photographs: unseen crops, not "
                     "unseen photographs. The run is tiny; the paper trains at 256² on AFHQ/CelebA-HQ for days.")
    notes.append("Correlation is the normalised uncentred covariance Cov = F·Fᵀ of §4.1 with F the flattened branch "
                 "outputs over all images; a silent branch has zero correlation with every other.")
    return shipped.with_shipped(Section(
        key=NAME, title="Image decomposition by a branched class-transfer GAN",
        intro="A branched generator f = R + Σ_k v_k(x, y) (paper §7, eq. 15) re-generates each image; its branch "
              "outputs are ambient-space components of the image.",
        numbers=numbers, figures=figures, notes=notes), summary.get("shipped", []), out)
