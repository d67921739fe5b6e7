"""App. A and App. F over a folder of decompositions (paper App. A, Figs. 13–15; App. F, Figs. 12, 21).

``branchspec decompose`` writes one ``NAME.npz`` per image into its output
folder. These functions run the single-image applications on every one of
them and write one summary plus the arrays one montage figure needs:

* :func:`segment_folder` — the Chan–Vese eye segmentation of
  :mod:`branchspec.apps.segmentation` on each decomposition, per image in
  ``OUT/NAME/`` (mask, overlay, ``segment.npz``, ``segment.json``), and
  ``OUT/segment.json``: how many images, on how many an eye pair was found
  (exactly two regions survive the row-wise pair rule, App. F step 5), and
  per image the locator(s), target and region counts;
* :func:`manipulate_folder` — per image the α-sweep (App. A, Figs. 13–14) of
  one component (the one with the largest energy share unless given) and
  subset sums R + Σ_{k∈S} v_k (Fig. 15; default: the strongest third of the
  components by energy vs the rest), stacked into ``OUT/sweeps.npz`` and
  ``OUT/subsets.npz``, summarised in ``OUT/manipulate.json``.

The montage figures are drawn from these files by
:mod:`branchspec.figures.apps_batch`. A file in the folder that is not a
decomposition is skipped and listed (``skipped``), not an error; a folder with
none at all is one.

Example:
    >>> doc = segment_folder(decomposition_files("runs/afhq-cat"), "runs/afhq-cat-seg")  # doctest: +SKIP
    >>> doc["pairs_found"], doc["images"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from branchspec.apps.components import Decomposition
from branchspec.apps.memory import LOAD_COPIES, check_manipulation, check_segmentation
from branchspec.apps.manipulation import subset_sum, sweep
from branchspec.apps.spatial import pair_on_eyes
from branchspec.apps.segmentation import LOCATOR_CHOICES, SegmentConfig, save_segmentation, segment
from branchspec.budget import BASELINE_BYTES, array_bytes, gb, npz_arrays
from branchspec.budget import check as budget_check
from branchspec.errors import ConfigError, DataError
from branchspec.io import atomic_write_npz, atomic_write_text, safe_stem


def decomposition_files(path: str | os.PathLike, field: str = "path") -> list[Path]:
    """``[path]`` for a file; the ``*.npz`` directly inside a folder (sorted) for a folder; else a
    :class:`~branchspec.errors.ConfigError` of ``field`` (what the caller calls ``path``)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.glob("*.npz") if f.is_file() and not f.name.startswith("."))
        if not files:
            raise ConfigError(field, f"folder {p} holds no .npz decomposition (write one with 'branchspec decompose')")
        return files
    raise ConfigError(field, f"no such file or folder: {p}")


def _load_all(paths: Sequence[Path]) -> tuple[list[tuple[Path, Decomposition]], list[dict]]:
    """Every decomposition of ``paths`` (all held at once: their total is checked against the memory budget
    from the npy headers first); the unreadable ones are skipped and listed."""
    claimed = 0
    for p in paths:
        try:
            claimed += sum(array_bytes(s, d) for s, d in npz_arrays(p).values())
        except DataError:
            pass  # skipped below, with the reason
    if paths:
        budget_check(BASELINE_BYTES + LOAD_COPIES * claimed,
                     f"the {len(paths)} decomposition(s) in {Path(paths[0]).parent} (their arrays take {gb(claimed)} GB)")
    good, skipped = [], []
    for p in paths:
        try:
            good.append((Path(p), Decomposition.load(p)))
        except DataError as exc:
            skipped.append({"file": str(p), "reason": str(exc)[:200]})
    if not good:
        why = skipped[0]["reason"] if skipped else "no files"
        raise DataError(f"none of the {len(paths)} file(s) is a readable decomposition (first: {why})")
    return good, skipped


def _unit_image(dec: Decomposition) -> np.ndarray:
    return dec.input if dec.input is not None else dec.output


def segment_folder(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                   locators: Sequence[int] | None = None, target: int | None = None,
                   cfg: SegmentConfig = SegmentConfig(), progress: bool = False,
                   eyes: dict[str, list] | None = None, eye_tol: float = 0.1, choose_locators: str = "image") -> dict:
    """App. F on every decomposition; per-image results in ``out_dir/NAME/``, summary ``out_dir/segment.json``.

    ``choose_locators`` (when ``locators`` is None): ``"image"`` — each image's own, by peak ratio (App. F);
    ``"folder"`` — the same two for every image, chosen by :func:`folder_locators`.

    An *eye pair is found* when exactly two regions are kept by the row-wise
    multiplicity-2 rule (``SegmentResult.kept == 2``). The per-image panels
    (image, locator energy + initial region, target, Chan–Vese, kept mask) go
    to ``out_dir/montage.npz`` for :func:`branchspec.figures.apps_batch.segmentation_montage`.

    ``eyes`` (optional): the true eye centres, ``{image name: [(row, col), (row, col)]}`` as fractions of
    the side, or ``{"*": [...]}`` for every image (aligned faces: :data:`branchspec.apps.spatial.EYE_CENTRES`);
    then ``on_eyes`` counts the images whose kept pair lies on them (:func:`branchspec.apps.spatial.pair_on_eyes`,
    within ``eye_tol`` of the side). Images without marks are not counted.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    decs, skipped = _load_all([Path(p) for p in paths])
    big = max((d for _, d in decs), key=lambda d: d.R.size)
    check_segmentation(max(d.num_components for _, d in decs), big.R.shape, len(decs), Path(paths[0]).parent)
    for p, dec in decs:  # every index problem before any work
        for field, ks in (("locators", locators or ()), ("target", [] if target is None else [target])):
            bad = [k for k in ks if not 0 <= k < dec.num_components]
            if bad:
                raise ConfigError(field, f"component(s) {bad} out of range 0..{dec.num_components - 1} for {p.name}")
    folder = Path(paths[0]).parent
    marks_of = _marks_lookup(eyes, [p.stem for p, _ in decs], folder, _source_stems(folder))
    if choose_locators not in LOCATOR_CHOICES:
        raise ConfigError("choose_locators", f"must be one of {LOCATOR_CHOICES}, got {choose_locators!r}")
    choice = None
    if locators is None and choose_locators == "folder":
        locators, rates = folder_locators([d for _, d in decs], cfg)
        choice = {"rule": "folder: the two components whose energy alone most often yields one eye pair (App. F rule)",
                  "pair_rates": rates, "locators": locators}
    per, images, masks, inits, vrs = [], [], [], [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(decs), desc="segment", unit="img")
    for p, dec in decs:
        res = segment(dec, locators, target, cfg)
        if bar is not None:
            bar.update(1)
        doc = save_segmentation(dec, res, out / p.stem)
        found = res.kept == 2
        marks = marks_of(p.stem)
        on_eyes = None if marks is None else bool(found and pair_on_eyes(doc["pair_geometry"]["regions"], marks, eye_tol))
        per.append({"name": p.stem, "source": str(p), "domain": dec.domain, "pair_found": found,
                    "eye_like": found and doc["pair_geometry"]["eye_like"], "on_eyes": on_eyes,
                    "locators": res.locators, "target": res.target, "regions": res.regions, "kept": res.kept,
                    "mask_pixels": doc["mask_pixels"]})
        images.append(_unit_image(dec))
        masks.append(res.mask)
        inits.append(res.init)
        vrs.append(dec.value_range)
    if bar is not None:
        bar.close()
    shapes = {a.shape for a in images}
    n_found = sum(r["pair_found"] for r in per)
    summary = {
        "images": len(per), "pairs_found": n_found, "pair_fraction": n_found / len(per),
        "eye_like_pairs": sum(r["eye_like"] for r in per),
        "marked_images": sum(r["on_eyes"] is not None for r in per),
        "on_eyes": sum(bool(r["on_eyes"]) for r in per),
        "on_eyes_fraction": (sum(bool(r["on_eyes"]) for r in per) / max(1, sum(r["on_eyes"] is not None for r in per))
                             if eyes is not None else None),
        "rule": "eye pair found = exactly two regions kept by the row-wise multiplicity-2 rule (App. F); eye-like = "
                "that pair placed like the eyes of an aligned face (segmentation.pair_geometry, beyond the paper)",
        "automatic": {"locators": locators is None or choice is not None, "target": target is None},
        "locator_choice": choice or {"rule": "given" if locators is not None else "image: peak ratio (App. F)"},
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "per_image": per, "skipped": skipped, "files": ["segment.json"] + [f"{r['name']}/" for r in per],
    }
    if len(shapes) == 1:  # one montage array when all images share a size (decompose writes one size)
        atomic_write_npz(out / "montage.npz", dict(
            images=np.stack(images), masks=np.stack(masks), inits=np.stack(inits),
            names=np.asarray([r["name"] for r in per]), found=np.asarray([r["pair_found"] for r in per]),
            eye_like=np.asarray([r["eye_like"] for r in per]),
            value_range=np.asarray(vrs[0], np.float32)), compressed=False)
        summary["files"].append("montage.npz")
    atomic_write_text(out / "segment.json", json.dumps(summary, indent=2))
    return summary


def folder_locators(decs: Sequence[Decomposition], cfg: SegmentConfig = SegmentConfig(), count: int = 2,
                    sample: int = 64) -> tuple[list[int], list[float]]:
    """The ``count`` locators of a folder: components ranked by how often their energy alone, as the locator,
    leads App. F's row rule to exactly one pair of regions, on up to ``sample`` evenly spaced decompositions.

    Beyond the paper, which picks locators per image by their peak ratio: on a generator whose face-part
    branches are the same for every image, one choice for the folder avoids picking a lighting highlight on
    some images. No eye position is used — only the App. F criterion itself (two regions on the same rows).
    Returns the locators (best first) and every component's rate.
    """
    pick = [decs[int(i)] for i in np.linspace(0, len(decs) - 1, min(sample, len(decs))).round()]
    rows = replace(cfg, pair_rule="rows")  # the rate of App. F's own rule, whatever the folder run keeps
    m = min(d.num_components for d in pick)
    rates = [float(np.mean([segment(d, [k], None, rows).kept == 2 for d in pick])) for k in range(m)]
    return [int(k) for k in np.argsort(-np.asarray(rates), kind="stable")[:count]], rates


def _source_stems(folder: Path) -> dict[str, str]:
    """``{decomposition name: its image's stem}`` as ``decompose`` recorded it in ``folder/decomposition.json``
    ("sources"); empty for a folder without one (decompositions written by other programs)."""
    try:
        doc = json.loads((folder / "decomposition.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    src = doc.get("sources") if isinstance(doc, dict) else None
    return {str(k): str(v) for k, v in src.items()} if isinstance(src, dict) else {}


def _marks_lookup(eyes: dict[str, list] | None, names: Sequence[str], folder: Path,
                  sources: dict[str, str] | None = None):
    """The eye marks of a decomposition named ``name``: those of its image's stem (``sources``, from
    decompose's decomposition.json: ``cat.3000`` for ``cat_3000.npz``, and the right image when two stems
    became one safe name and the second got ``_2``), else ``eyes[name]`` or the mark whose image name becomes
    ``name`` when written (:func:`branchspec.io.safe_stem`), else ``eyes["*"]``.
    Per-image marks that name none of ``names`` are an error (field ``eyes``), not a silent 0 of 0."""
    if eyes is None:
        return lambda name: None
    sources = sources or {}
    stems = set(sources.values())
    safe = {safe_stem(k): v for k, v in eyes.items() if k != "*"}

    def of(name: str):
        src = sources.get(name)
        if src is not None:  # the image is known: its own marks, or marks under its written name (no image's stem)
            if src in eyes:
                return eyes[src]
            return eyes[name] if name in eyes and name not in stems else eyes.get("*")
        return eyes.get(name, safe.get(name, eyes.get("*")))

    if "*" not in eyes and eyes and not any(of(n) is not None for n in names):
        raise ConfigError("eyes", f"none of the {len(eyes)} marked images (e.g. {next(iter(eyes))!r}) is among "
                                  f"the {len(names)} decompositions in {folder}")
    return of


def strongest_component(dec: Decomposition) -> int:
    """Index of the component with the largest energy ‖v_k‖² (the largest energy share)."""
    return int(np.argmax(dec.energies()))


def default_subsets(dec: Decomposition) -> list[list[int]]:
    """The strongest third of the components by energy, and the rest (Fig. 15 style); ``[[0]]`` for M = 1."""
    m = dec.num_components
    if m == 1:
        return [[0]]
    order = [int(k) for k in np.argsort(-dec.energies())]
    third = max(1, m // 3)
    return [sorted(order[:third]), sorted(order[third:])]


def manipulate_folder(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, component: int | None = None,
                      alphas: Sequence[float] = (-1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3),
                      subsets: Sequence[Sequence[int]] | None = None) -> dict:
    """App. A on every decomposition: one α-sweep row and one row of subset sums per image.

    ``component`` None → each image's strongest component
    (:func:`strongest_component`); ``subsets`` None → :func:`default_subsets`
    per image. Writes ``sweeps.npz`` (``images`` (N, A, C, H, W), ``components``
    (N,), ``alphas``, ``names``), ``subsets.npz`` (``images`` (N, 2 + S, C, H,
    W): input (the re-generation if the file has none), re-generation, then the S sums; ``labels`` (N, 2 + S)) and
    ``manipulate.json``. All images must share one size (decompose writes one).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    decs, skipped = _load_all([Path(p) for p in paths])
    shapes = {d.R.shape for _, d in decs}
    if len(shapes) > 1:
        raise DataError(f"the decompositions have different image shapes {sorted(shapes)}; run manipulate per file")
    ms = {d.num_components for _, d in decs}
    n_sets = len(subsets) if subsets is not None else 2
    check_manipulation(max(ms), next(iter(shapes)), 1, len(alphas), n_sets, images=len(decs),
                       source=Path(paths[0]).parent)
    if component is not None:
        for p, d in decs:
            if not 0 <= component < d.num_components:
                raise ConfigError("component", f"{component} out of range 0..{d.num_components - 1} for {p.name}")
    per, rows, sums, labels = [], [], [], []
    for p, dec in decs:
        k = strongest_component(dec) if component is None else int(component)
        sets = default_subsets(dec) if subsets is None else [list(s) for s in subsets]
        bad = sorted({i for s in sets for i in s if not 0 <= i < dec.num_components})
        if bad:
            raise ConfigError("subsets", f"component(s) {bad} out of range 0..{dec.num_components - 1} for {p.name}")
        energy = dec.energies()
        share = float(energy[k] / max(energy.sum(), 1e-30))
        rows.append(sweep(dec, k, alphas))  # (A, C, H, W)
        sums.append(np.stack([_unit_image(dec), dec.output] + [subset_sum(dec, s) for s in sets]))  # (2 + S, C, H, W)
        labels.append(["input" if dec.input is not None else "re-gen.", "re-gen."] + ["R+Σ{" + ",".join(map(str, s)) + "}" for s in sets])
        per.append({"name": p.stem, "source": str(p), "component": k, "energy_share": share, "subsets": sets})
    if len({len(lab) for lab in labels}) > 1:
        raise DataError("the images got different numbers of subsets; give `subsets` explicitly")
    vr = np.asarray(decs[0][1].value_range, np.float32)
    names = np.asarray([r["name"] for r in per])
    atomic_write_npz(out / "sweeps.npz", dict(
        images=np.stack(rows), components=np.asarray([r["component"] for r in per]),
        alphas=np.asarray(alphas, np.float32), names=names, value_range=vr), compressed=False)
    atomic_write_npz(out / "subsets.npz", dict(images=np.stack(sums), labels=np.asarray(labels), names=names,
                                               value_range=vr), compressed=False)
    doc = {"images": len(per), "alphas": [float(a) for a in alphas], "branches": sorted(ms),
           "component_rule": "largest energy share" if component is None else f"given ({component})",
           "subset_rule": "strongest third by energy vs the rest" if subsets is None else "given",
           "per_image": per, "skipped": skipped, "files": ["sweeps.npz", "subsets.npz", "manipulate.json"]}
    atomic_write_text(out / "manipulate.json", json.dumps(doc, indent=2))
    return doc
