"""The branched classifier of §6: train one run or a sweep over M, then analyse a checkpoint (Figs. 5–8, 16, 17).

``run`` trains (:func:`branchspec.classifier.train.train`, or
:func:`branchspec.classifier.analysis_run.run_sweep` with one run per M in
``out/M<m>/`` and ``out/sweep.json`` + ``sweep.png``), then, with an
:class:`Analysis`, analyses a checkpoint — by default the last one trained
(the largest M of a sweep) — into ``analysis.json`` + ``analysis.npz`` and
the figures (:func:`branchspec.classifier.analysis_run.analyze`). Either
part may be left out: ``train=None`` analyses an existing checkpoint.

Example:
    >>> from branchspec.classifier.train import TrainConfig
    >>> cfg = Config(train=TrainConfig(data="digits", out="", epochs=1, width=1, subset=64),
    ...              sweep=(2, 4), analysis=Analysis(per_class=2, hessian_samples=0))
    >>> run(cfg, "RUN")["analysis"]["num_active"]   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from branchspec.errors import ConfigError
from branchspec.experiments import common, shipped
from branchspec import textlists
from branchspec.experiments.shipped import copy_shipped
from branchspec.numtext import number
from branchspec.options import api_only, check_fields, option
from branchspec.report import Figure, Section
from branchspec.classifier.train import TrainConfig

NAME = "classifier"


@dataclass(frozen=True)
class Analysis:
    """The §6 analysis of one checkpoint; each option is one ``branchspec analyze-classifier`` flag."""

    checkpoint: str = option("", "RUN/last.json (or RUN/last) of train-classifier",
                             required=True)  # the API's "": the last checkpoint this experiment trained
    data: str = option("", "the cifar-10-batches-py folder of the run, or 'digits'",
                       required=True)  # the API's "": the training data
    per_class: int = option(20, "random test samples per class in Fig. 7")
    top: float = option(7.0, "gallery: top PERCENT most confident images (Fig. 16)")
    pairs: tuple[tuple[int, int], ...] | None = option(
        None, "gallery (branch:class) pairs, e.g. 10:7,14:7", parse=textlists.pairs,
        default_help="2 most informative branches x their 2 top classes")
    hessian_samples: int = option(256, "test images for the first-layer Hessian (0: skip; on 32 images the "
                                       "inter-branch blocks of a trained model do not yet cancel and its block "
                                       "diagonality is noise-dominated; scripts/hessian_samples.py)")
    train_split: bool = option(False, "also the §6 loss and accuracy on the whole training split, un-augmented, "
                                      "against the loss floor (analysis.json 'train_split'; minutes on a CPU for "
                                      "CIFAR-10)")
    folder: str = api_only("analysis", "results go to out/<folder> (\"\" = out itself)")
    figures: bool = api_only(True, "draw the figures")

    def __post_init__(self) -> None:
        check_fields(self)  # finite floats
        if self.per_class < 1:
            raise ConfigError("per_class", f"must be >= 1, got {self.per_class}")
        if not 0 < self.top <= 100:
            raise ConfigError("top", f"must be a percentage in (0, 100], got {self.top}")
        if self.hessian_samples < 0:
            raise ConfigError("hessian_samples", f"must be >= 0 (0: skip), got {self.hessian_samples}")


@dataclass(frozen=True)
class Config:
    """Training (one run or a sweep over M) and / or the analysis of a checkpoint."""

    train: TrainConfig | None = None  # its ``out`` is replaced by the experiment's folder
    sweep: tuple[int, ...] = ()  # one run per M in out/M<m>/ (overrides train.num_branches)
    resume: bool = False  # continue unfinished runs (a sweep skips finished ones)
    sweep_procs: int = 1  # train the sweep's runs on this many processes (classifier/sweep.py)
    sweep_threads: int | None = None  # torch threads of each sweep process
    max_steps: int | None = None  # stop a single run after this many steps (with a checkpoint)
    progress: bool = True
    training_figure: bool = False  # draw out/training.png of the last run trained
    analysis: Analysis | None = None
    shipped: tuple[str, ...] = ()  # shipped models' folders (checkpoints/cifar10-m16, …): their figures join in

    def __post_init__(self) -> None:
        if isinstance(self.shipped, str):  # one folder given as text
            object.__setattr__(self, "shipped", (self.shipped,) if self.shipped else ())
        names = [Path(f).name for f in self.shipped]
        if len(set(names)) != len(names):
            raise ConfigError("shipped", f"two shipped folders share a name: {names}")


def shipped_folder(name: str = "cifar10-m16") -> str:
    """``checkpoints/<name>`` of the source checkout this package runs from, or "" when it is not there.

    The README's set-up installs the checkout in editable mode, so the shipped
    CIFAR-10 model (weights, metrics, analysis figures) sits next to ``src/``.
    """
    p = Path(__file__).resolve().parents[3] / "checkpoints" / name
    return str(p) if (p / SHIPPED_FILE).is_file() else ""


MAX_ANALYSIS_BYTES = 64 << 20  # a shipped analysis.json larger than this is refused
SHIPPED_FILE = shipped.SHIPPED_FILE  # {"title", "figures": [{"file", "caption", "command"}], "notes", "analysis"}


def _copy_shipped(src: Path, dest: Path) -> dict:
    """Copy a shipped model's figures into the report folder (the report embeds only its own files)."""
    doc = copy_shipped(src, dest)
    numbers = dict(doc.get("numbers", {}))
    name = doc.get("analysis", "analysis/analysis.json")
    if isinstance(name, str) and os.path.lexists(src / name):  # the numbers come from the saved analysis
        raw = shipped.read_inside(src, name, limit=MAX_ANALYSIS_BYTES)
        try:
            numbers.update(_analysis_numbers(json.loads(raw.decode("utf-8"))))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ConfigError("shipped", f"{src / name} is not an analysis.json ({type(exc).__name__})") from None
    return {**doc, "numbers": numbers}


def _analysis_numbers(res: dict) -> dict:
    """The headline numbers of an ``analysis.json`` (accuracy, activity, correlation, Hessian diagonality),
    as report text whatever the file holds (:func:`branchspec.numtext.number`)."""
    out = {"test accuracy (analysis)": number(res["accuracy"], ".4f"),
           "active / silent branches": f"{number(res['num_active'])} / {number(res['num_silent'])}",
           "mean |correlation| between branches": number(res["mean_abs_offdiag_correlation"], ".3f")}
    if "num_silent_centred" in res:  # analyses written before it lack the count
        out["silent with each branch's mean output removed (input-independent)"] = number(res["num_silent_centred"])
    h = res.get("hessian", {})
    if h.get("available") and "init" in h and "trained" in h:
        out["first-layer Hessian block diagonality, init → trained"] = (
            f"{number(h['init']['summary']['block_diagonality'], '.3f')} → "
            f"{number(h['trained']['summary']['block_diagonality'], '.3f')}")
    t = res.get("train_split")
    if t:
        out["training-split loss (un-augmented) vs floor"] = (
            f"{number(t['loss'], '.4f')} vs {number(t['loss_floor'], '.4f')} ({number(t['above_floor'], '+.4f')}); "
            f"train accuracy {number(t['accuracy'], '.4f')}")
    return out


def run(cfg: Config, out) -> dict:
    """Train and / or analyse as ``cfg`` says, under ``out``; returns the summary (also saved)."""
    out = Path(out)
    summary: dict = {}
    last = None
    if cfg.train is not None:
        tc = replace(cfg.train, out=str(out))
        if cfg.sweep:
            from branchspec.classifier.analysis_run import run_sweep
            from branchspec.figures.classifier import draw_sweep, draw_sweep_outputs

            rows = run_sweep(tc, list(cfg.sweep), out, resume=cfg.resume, progress=cfg.progress,
                             procs=cfg.sweep_procs, threads=cfg.sweep_threads)
            draw_sweep(out / "sweep.json", out / "sweep.png")
            draw_sweep_outputs(out / "sweep.json", out / "sweep-outputs.png")
            summary["sweep"] = {k: rows[k] for k in ("M", "active", "silent", "test_acc")}
            run_dir = out / f"M{max(cfg.sweep)}"
        else:
            from branchspec.classifier.train import train

            summary["train"] = train(tc, resume=cfg.resume, max_steps=cfg.max_steps, progress=cfg.progress)
            run_dir = out
        last = run_dir / "last.json"
        summary["last_checkpoint"] = str(last)
        if cfg.training_figure:
            from branchspec.figures.classifier import draw_training

            summary["training_figure"] = str(draw_training(run_dir / "metrics.csv", out / "training.png"))
    a = cfg.analysis
    if a is not None:
        from branchspec.classifier.analysis_run import analyze

        ckpt = a.checkpoint or (str(last) if last else "")
        data = a.data or (cfg.train.data if cfg.train else "")
        dest = out / a.folder if a.folder else out
        res = analyze(ckpt, data, dest, per_class=a.per_class, top_fraction=a.top / 100,
                      pairs=[tuple(p) for p in a.pairs] if a.pairs else None,
                      hessian_samples=max(0, a.hessian_samples), train_split=a.train_split)
        if a.figures:
            from branchspec.figures.classifier import draw_analysis

            draw_analysis(dest)
        keep = res["ablation"]["keep_top"]
        summary["analysis"] = {
            "folder": str(dest), "checkpoint": ckpt, "data": data, "accuracy": res["accuracy"],
            "num_branches": res["num_branches"], "num_active": res["num_active"], "num_silent": res["num_silent"],
            "num_silent_centred": res["num_silent_centred"], "mean_abs_offdiag_correlation": res["mean_abs_offdiag_correlation"],
            "keep_top": {str(k): v for k, v in keep.items()},
            "hessian_note": res["hessian"].get("note", "computed with branchspec.hessian"),
        }
        if "train_split" in res:
            summary["analysis"]["train_split"] = res["train_split"]
    if cfg.shipped:
        summary["shipped"] = [_copy_shipped(Path(f), out / "shipped" / Path(f).name) for f in cfg.shipped]
    resolved = replace(cfg, train=replace(cfg.train, out=str(out))) if cfg.train is not None else cfg
    return common.save(out, NAME, resolved, summary)


def _train_command(t: dict, out: Path, sweep) -> str:
    line = f"branchspec train-classifier --data {t['data']} --out {out}"
    line += f" --sweep {','.join(map(str, sweep))}" if sweep else f" --branches {t['num_branches']}"
    line += f" --width {t['width']:g} --epochs {t['epochs']} --batch-size {t['batch_size']} --optimizer {t['optimizer']}"
    if t["lr"] is not None:
        line += f" --lr {t['lr']:g}"
    line += f" --engine {t['engine']}"
    return line + (f" --subset {t['subset']}" if t["subset"] else "")


def section(out) -> Section:
    """The report section "classifier" from the files a :func:`run` saved under ``out``."""
    out = Path(out)
    cfg, summary = common.load(out)
    t, an = cfg["train"], summary.get("analysis")
    rel = lambda p: common.relative(out, p)  # noqa: E731
    train_cmd = _train_command(t, out, cfg["sweep"]) if t else ""
    figs, numbers, notes = [], {}, []
    if "sweep" in summary:
        figs.append(Figure(rel(out / "sweep.png"), "Active and silent branches vs M (log scale) and each M's "
                           "inter-branch covariance — paper Fig. 5 panel 1 and Fig. 17.", train_cmd))
    if an:
        ana, m = Path(an["folder"]), an["num_branches"]
        an_cmd = f"branchspec analyze-classifier --checkpoint {an['checkpoint']} --data {an['data']} --out {ana}"
        for name, caption in (
                ("fig6_class_means.png", f"Each branch's mean output per class, M = {m} (paper Fig. 6)."),
                ("fig5_covariance.png", "Inter-branch covariance F·Fᵀ and branch norms with the active threshold "
                                        "(paper Fig. 5 panel 2)."),
                ("fig7_confidence.png", "Per-sample branch confidence v_k[y] − mean_{c≠y} v_k[c] on random test "
                                        "samples of every class (paper Fig. 7)."),
                ("fig8_galleries.png", "Most confident test images of the most informative (branch, class) pairs "
                                       "— intra-class specialisation (paper Figs. 8, 16)."),
                ("ablation.png", "Accuracy with each branch silenced, and with all but the top-k branches silenced "
                                 "(beyond the paper).")):
            figs.append(Figure(rel(ana / name), caption, an_cmd))
        if summary.get("training_figure"):
            figs.append(Figure(rel(summary["training_figure"]), f"Training curve of the M = {m} model.", train_cmd))
        if (ana / "fig5_hessian.png").exists():
            figs.append(Figure(rel(ana / "fig5_hessian.png"), "First-layer Hessian at initialisation and after "
                               "training (paper Fig. 5 panels 3–4).", an_cmd))
        how = f" ({t['data']}, {t['subset'] or 'all'} training images, {t['epochs']} epochs)" if t else ""
        numbers[f"test accuracy, M = {m}{how}"] = round(an["accuracy"], 4)
        numbers[f"active / silent branches, M = {m}"] = f"{an['num_active']} / {an['num_silent']}"
        if "num_silent_centred" in an:
            numbers[f"silent with each branch's mean output removed, M = {m}"] = an["num_silent_centred"]
    if "sweep" in summary:
        sw = summary["sweep"]
        numbers["active per M"] = json.dumps(dict(zip(map(str, sw["M"]), sw["active"])))
        numbers["test accuracy per M"] = json.dumps({str(k): round(v, 3) for k, v in zip(sw["M"], sw["test_acc"])})
    if an:
        kt = an["keep_top"]
        numbers["mean |correlation| between branches"] = round(an["mean_abs_offdiag_correlation"], 3)
        numbers["accuracy with only the top-1 / top-2 branches"] = (
            f"{kt.get('1', float('nan')):.3f} / {kt.get('2', float('nan')):.3f}")
    if t:
        notes.append("Branch = slim CIFAR ResNet18 (3×3 stem, 4 stages × 2 BasicBlocks, strides 1,2,2,2); this run "
                     f"uses width {t['width']:g} (the paper's 0.08 M-parameter branch is width 5.4, the default).")
    notes += ["Loss: cross-entropy between softmax(±1 class vector) and softmax(clamp(Σ_k v_k, −1, 1)) (§6, eq. 3).",
              "Active branch: ‖F_k‖ ≥ 0.1·max_j ‖F_j‖ over the test set (Fig. 4 definition)."]
    if an:
        notes.append(f"Hessian: {an['hessian_note']}")
    return shipped.with_shipped(Section(
        key=NAME, title="Branched classifier (§6)",
        intro="M slim ResNet18 branches summed and trained as one classifier specialise: some branches become "
              "experts on a few classes, others fall silent (paper §6).",
        numbers=numbers, figures=figs, notes=notes), summary.get("shipped", []), out)
