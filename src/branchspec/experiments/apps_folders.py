"""App. A and App. F over folders of decompositions (§7, Figs. 12–15, 21): the runs and their report sections.

:func:`run_folder` is :func:`branchspec.experiments.apps.run` for a Config whose
``folder`` names the output of ``branchspec decompose``: the single-image
applications on every decomposition in it (:mod:`branchspec.apps.batch`) and
their montages (:mod:`branchspec.figures.apps_batch`) — what ``branchspec
segment FOLDER`` and ``branchspec manipulate FOLDER`` run.

:func:`folder_sections` turns every step folder under a report folder into a
:class:`branchspec.report.Section` (saved as ``SUB/section.json``, so
``branchspec report --out DIR`` rebuilds the page), and
:func:`write_folder_report` writes the page with :func:`branchspec.report.write_report`:

* a ``decompose`` folder (``decomposition.json``): images, PSNR / SSIM of the
  re-generation and of R alone vs the input, mean |correlation| between
  branch outputs, active / silent branches, and — when ``decompose --judge``
  was given — the judge's transfer accuracy, source retention and own-domain
  fidelity (:func:`branchspec.apps.judge.judge_numbers`); figures ``grid.png``
  (Figs. 10–11) and ``profiles.png``;
* a ``segment`` folder (``segment.json`` of a folder run): on how many images
  an eye pair was found (App. F); figure ``montage.png``;
* a ``manipulate`` folder (``manipulate.json`` of a folder run): figures
  ``sweeps.png`` (Figs. 13–14) and ``subsets.png`` (Fig. 15).

``scripts/apps_pipeline.sh`` runs the three commands on real image folders and
then :func:`write_folder_report`.

Example:
    >>> write_folder_report("runs/apps-real")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from branchspec.apps.batch import decomposition_files, manipulate_folder, segment_folder
from branchspec.apps.judge import judge_numbers
from branchspec.apps.segmentation import SegmentConfig
from branchspec.figures.apps_batch import segmentation_montage, subsets_montage, sweep_montage
from branchspec.io import read_capped
from branchspec.numtext import number
from branchspec.report import Figure, Section, write_report

MAX_RESULT_BYTES = 16 << 20  # a step's JSON larger than this is not read

# what a folder run keeps of a batch summary in its own summary.json (the per-image rows stay in the batch's JSON)
_PER_IMAGE = ("per_image", "config")


def run_folder(folder: str, out: Path, segment=None, manipulate=None) -> dict:
    """App. F (``segment``: an :class:`~branchspec.experiments.apps.Segment`) and App. A (``manipulate``: an
    :class:`~branchspec.experiments.apps.Manipulate`) on every decomposition in ``folder``, under ``out``.

    Returns ``{"folder", "segmentation", "manipulation"}``, each part the batch summary
    (``segment.json`` / ``manipulate.json`` without the per-image rows) plus its ``folder``.
    A folder takes one sweep component, no per-component gains and no ground-truth mask.
    """
    files = decomposition_files(folder, "folder")
    summary: dict = {"folder": str(folder)}
    if (sc := segment) is not None:
        sc.check_folder()  # no one truth mask
        dest = out / sc.folder if sc.folder else out
        doc = segment_folder(files, dest, list(sc.locators) if sc.locators is not None else None, sc.target,
                             segment_config(sc), progress=sc.progress, eyes=sc.eyes,
                             choose_locators=sc.choose_locators)
        if "montage.npz" in doc["files"]:
            segmentation_montage(dest / "montage.npz", dest / "montage.png")
        summary["segmentation"] = {**{k: v for k, v in doc.items() if k not in _PER_IMAGE}, "folder": str(dest)}
    if (mc := manipulate) is not None:
        mc.check_folder()  # one sweep component, no per-component gains
        dest = out / mc.folder if mc.folder else out
        subsets = None if mc.subsets == "thirds" else [list(s) for s in mc.subsets]
        doc = manipulate_folder(files, dest, mc.components[0] if mc.components else None, list(mc.alphas), subsets)
        sweep_montage(dest / "sweeps.npz", dest / "sweeps.png")
        subsets_montage(dest / "subsets.npz", dest / "subsets.png")
        summary["manipulation"] = {**{k: v for k, v in doc.items() if k not in _PER_IMAGE}, "folder": str(dest)}
    return summary


def segment_config(sc) -> SegmentConfig:
    """The Chan–Vese settings of an :class:`~branchspec.experiments.apps.Segment` (one image or a folder)."""
    return SegmentConfig(mu=sc.mu, max_num_iter=sc.iterations, segment_on=sc.on, energy_sigma=sc.energy_sigma,
                         pair_rule=sc.pair_rule)


_f = number  # "n/a" for a missing value; a number too large, or not a number, still becomes text


def decomposition_numbers(doc: dict) -> dict:
    """Report rows of a ``decomposition.json``: fidelity vs R, correlation, activity, judge (if any)."""
    rows = {
        "images decomposed (skipped)": f"{doc.get('images')} ({doc.get('skipped', 0)})",
        "image size": f"{doc.get('img_size')}²",
        "target domain": str(doc.get("target_domain", "")),
        "PSNR (dB): re-generation vs input / R alone vs input": f"{_f(doc.get('psnr'), '.2f')} / "
                                                                f"{_f(doc.get('psnr_residual_only'), '.2f')}",
        "SSIM: re-generation vs input / R alone vs input": f"{_f(doc.get('ssim'), '.3f')} / "
                                                           f"{_f(doc.get('ssim_residual_only'), '.3f')}",
        "mean |correlation| between branch outputs (centred)": f"{_f(doc.get('mean_abs_correlation'), '.3f')} "
                                                              f"({_f(doc.get('mean_abs_pearson'), '.3f')})",
        "active / silent branches": f"{doc.get('active')} / {doc.get('silent')}",
    }
    rows.update(judge_numbers(doc.get("judge")))
    return rows


def _read(p: Path) -> dict | None:
    try:
        doc = json.loads(read_capped(p, MAX_RESULT_BYTES, p.parent).decode("utf-8"))
    except (ValueError, RecursionError):  # missing, not a regular file, too large, not UTF-8 / JSON
        return None
    return doc if isinstance(doc, dict) else None


def _figs(sub: Path, items, cmd: str) -> list:
    return [Figure(f"{sub.name}/{name}", cap, cmd) for name, cap in items if (sub / name).is_file()]


def section_for(sub: Path, note: str = "") -> Section | None:
    """The section of one step folder, or None if it holds no known result."""
    sub = Path(sub)
    notes = [note] if note else []
    if (doc := _read(sub / "decomposition.json")) is not None:
        return Section(sub.name, f"Decomposition: {sub.name}",
                       "f = R + Σ_k v_k of a branched class-transfer generator (§7, eq. 15) on every image.",
                       decomposition_numbers(doc),
                       _figs(sub, [("grid.png", "input, re-generation, R and the branch outputs, stretched (Figs. 10–11)"),
                                   ("profiles.png", "per-branch component profiles (beyond the paper)")],
                             f"branchspec decompose … --out {sub}"), notes)
    if (doc := _read(sub / "segment.json")) is not None and "pairs_found" in doc:
        per = doc.get("per_image", [])
        numbers = {"images": doc["images"], "pair of regions kept on": f"{doc['pairs_found']} of {doc['images']}",
                   "placed like eyes (aligned face)": f"{doc.get('eye_like_pairs', 'not measured')} of {doc['images']}",
                   "images found": ", ".join(r["name"] for r in per if r.get("pair_found")) or "none",
                   "rule": doc.get("rule", "")}
        return Section(sub.name, f"App. F Chan–Vese eye segmentation: {sub.name}",
                       "Locator and target components chosen automatically per image (docs/apps.md); "
                       "regions kept when they come in pairs on the same rows.", numbers,
                       _figs(sub, [("montage.png", "every image with its kept mask (magenta) and the initial "
                                                   "region from the locator (green), App. F / Fig. 12")],
                             f"branchspec segment FOLDER --out {sub}"), notes)
    if (doc := _read(sub / "manipulate.json")) is not None and "per_image" in doc:
        numbers = {"images": doc["images"], "component swept": doc.get("component_rule", ""),
                   "α values": ", ".join(_f(a, "g") for a in doc.get("alphas", [])),
                   "subsets": doc.get("subset_rule", "")}
        return Section(sub.name, f"App. A manipulation: {sub.name}",
                       "x(α) = R + Σ_{j≠k} v_j + α·v_k and subset sums R + Σ_{k∈S} v_k, one row per image.", numbers,
                       _figs(sub, [("sweeps.png", "α-sweep of one component per image (Figs. 13–14)"),
                                   ("subsets.png", "re-generation and subset sums per image (Fig. 15)")],
                             f"branchspec manipulate FOLDER --out {sub}"), notes)
    return None


def folder_sections(out_dir: str | os.PathLike, note: str = "") -> list[Section]:
    """A section per step folder directly under ``out_dir`` (sorted by name), each saved as its ``section.json``."""
    out = Path(out_dir)
    secs = []
    for sub in sorted(p for p in out.iterdir() if p.is_dir()):
        sec = section_for(sub, note)
        if sec is not None:
            sec.save(out)
            secs.append(sec)
    return secs


def write_folder_report(out_dir: str | os.PathLike, title: str = "branchspec: real images, App. A and App. F",
                        note: str = "") -> Path:
    """``out_dir/report.html`` from the step folders under ``out_dir`` (see :func:`folder_sections`)."""
    secs = folder_sections(out_dir, note)
    if not secs:
        raise ValueError(f"no decompose / segment / manipulate results under {out_dir}")
    return write_report(Path(out_dir), secs, title)
