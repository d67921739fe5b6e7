"""Unsupervised segmentation of cats' eyes from a decomposition (paper App. F, Figs. 12, 21).

The components are in image space and aligned with the image, so they can be
segmented directly. The procedure of App. F, step by step:

1. **Scalar images.** Each RGB component v_k becomes V_k, the Value channel
   of HSV, V = max(r, g, b) (for one channel, the channel itself).
2. **Initial level set** from *locator* components, strong at eyes and nose:
   e_k = |V_k − median V_k| scaled to max 1, summed over the locators; the
   initial region is its top ``1 − init_quantile`` pixels, and the level set
   φ₀ is the signed distance to that region (positive inside).
3. **Chan–Vese** (``skimage.segmentation.chan_vese``) on the *target*
   component, one that is flat inside the eye regions, from φ₀. The side of
   the result that covers most of the initial region is kept (Chan–Vese
   labels are only defined up to a swap).
4. **Clean-up.** Connected components smaller than ``min_area_fraction`` of
   the image, or not touching the (slightly dilated) initial region, are
   dropped; holes are filled.
5. **Row-wise multiplicity 2.** For every row, count the connected
   components crossing it; keep a component when, on at least
   ``pair_row_fraction`` of its rows, exactly two components are present.
   Two eyes side by side pass; the nose, alone on its rows, is dropped.

Automatic choice (when no index is given), a heuristic:

* locator = the component with the highest *peak ratio* — mean of e_k over
  its top 3 % pixels divided by its mean over all pixels: a component whose
  energy sits in a few small strong spots (eyes, nose) scores high, a
  texture or a smooth shading scores low;
* target = among the others, the component with the highest *Fisher
  contrast* between the initial region and a ring around it,
  (mean_in − mean_ring)² / (var_in + var_ring): flat inside the eyes and
  different from their surroundings;
* the three best locators are tried in that order, and the first that
  yields exactly one pair of regions wins (else the best-scored one).

Example:
    >>> res = segment(Decomposition.load("cat.npz"))  # doctest: +SKIP
    >>> res.mask.shape, res.locators, res.target  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from branchspec.apps.components import Decomposition
from branchspec.apps.memory import check_segmentation
from branchspec.apps.pairs import PAIR_RULES, pair_geometry, row_pairs, strongest_pair  # noqa: F401 (re-exported)
from branchspec.io import atomic_write_json, atomic_write_npz, atomic_write_via


SEGMENT_ON = ("value", "energy")
"""What Chan–Vese segments: the target component's Value channel (App. F), or the locators' summed energy — a
variant beyond the paper for small images, where an eye is a few pixels of bright and dark strokes that no
flat target region separates (docs/apps.md)."""
LOCATOR_CHOICES = ("image", "folder")
"""How a folder run picks the locators: per image by peak ratio (App. F), or once for the folder
(:func:`branchspec.apps.batch.folder_locators`, beyond the paper)."""
MAX_ENERGY_SIGMA = 64.0  # px: the smoothing of the locator energy, at most a quarter of a 256² image


@dataclass(frozen=True)
class SegmentConfig:
    """Parameters of the App. F procedure (defaults tuned on constructed examples)."""

    init_quantile: float = 0.96  # initial region = top 4 % of the locator energy
    peak_fraction: float = 0.03  # top pixels used by the locator peak ratio
    mu: float = 0.1  # Chan–Vese length penalty
    max_num_iter: int = 300  # Chan–Vese iterations
    min_area_fraction: float = 0.002  # drop connected components smaller than this share of the image
    seed_dilation: int = 2  # a kept component must touch the initial region dilated by this many px
    pair_row_fraction: float = 0.5  # share of a component's rows that must have multiplicity 2
    segment_on: str = "value"  # "value": Chan–Vese on the target's V (App. F); "energy": on the locator energy
    energy_sigma: float = 0.0  # Gaussian smoothing (px) of the locator energy before thresholding / segmenting
    pair_rule: str = "rows"  # "rows": App. F's row-wise multiplicity 2; "strongest": see PAIR_RULES

    def __post_init__(self):
        if not 0.0 < self.init_quantile < 1.0:
            raise ValueError(f"init_quantile must lie in (0, 1), got {self.init_quantile}")
        if not 0.0 < self.peak_fraction < 1.0:
            raise ValueError(f"peak_fraction must lie in (0, 1), got {self.peak_fraction}")
        if self.mu < 0 or self.max_num_iter < 1 or self.seed_dilation < 0:
            raise ValueError("mu >= 0, max_num_iter >= 1 and seed_dilation >= 0 are required")
        if not 0.0 <= self.min_area_fraction < 1.0 or not 0.0 < self.pair_row_fraction <= 1.0:
            raise ValueError("min_area_fraction in [0, 1) and pair_row_fraction in (0, 1] are required")
        if self.segment_on not in SEGMENT_ON:
            raise ValueError(f"segment_on must be one of {SEGMENT_ON}, got {self.segment_on!r}")
        if not 0.0 <= self.energy_sigma <= MAX_ENERGY_SIGMA:
            raise ValueError(f"energy_sigma must lie in [0, {MAX_ENERGY_SIGMA:g}] px, got {self.energy_sigma}")
        if self.pair_rule not in PAIR_RULES:
            raise ValueError(f"pair_rule must be one of {PAIR_RULES}, got {self.pair_rule!r}")


def value_channel(component: np.ndarray) -> np.ndarray:
    """HSV Value of a (C, H, W) component: max over channels, ``(H, W)`` (App. F remark)."""
    return np.asarray(component, np.float64).max(axis=0)


def _energy(V: np.ndarray) -> np.ndarray:
    e = np.abs(V - np.median(V))  # (H, W)
    top = e.max()
    return e / top if top > 0 else e


def locator_scores(dec: Decomposition, peak_fraction: float = 0.03) -> np.ndarray:
    """Peak ratio of every component, ``(M,)``: mean energy of its top pixels / mean energy."""
    out = []
    for v in dec.components:
        e = _energy(value_channel(v)).ravel()
        if e.max() <= 0:
            out.append(0.0)
            continue
        n = max(1, int(round(peak_fraction * e.size)))
        top = np.partition(e, e.size - n)[-n:]
        out.append(float(top.mean() / e.mean()))
    return np.asarray(out)


def locator_energy(dec: Decomposition, locators: Sequence[int], sigma: float = 0.0) -> np.ndarray:
    """Summed energy e_k of the locators, Gaussian-smoothed by ``sigma`` px when > 0, ``(H, W)``."""
    e = sum(_energy(value_channel(dec.components[k])) for k in locators)  # (H, W)
    return ndi.gaussian_filter(e, sigma) if sigma > 0 else e


def initial_mask(dec: Decomposition, locators: Sequence[int], quantile: float = 0.96,
                 sigma: float = 0.0) -> np.ndarray:
    """Top ``1 − quantile`` of the summed (optionally smoothed) locator energy, ``(H, W)`` bool."""
    return top_region(locator_energy(dec, locators, sigma), quantile)


def top_region(e: np.ndarray, quantile: float) -> np.ndarray:
    """The pixels of ``e`` above its ``quantile`` (at least its maximum), ``(H, W)`` bool."""
    thr = np.quantile(e, quantile)
    mask = e > thr
    if not mask.any():
        mask = e >= e.max()
    return mask


def target_scores(dec: Decomposition, init: np.ndarray, exclude: Sequence[int] = (), ring: int | None = None) -> np.ndarray:
    """Fisher contrast of every component between ``init`` and a ring around it, ``(M,)``.

    Components in ``exclude`` (the locators) score −inf.
    """
    h, w = init.shape
    r = ring or max(2, min(h, w) // 32)
    outer = ndi.binary_dilation(init, iterations=r) & ~init
    out = []
    for k, v in enumerate(dec.components):
        V = value_channel(v)
        span = V.max() - V.min()
        if k in exclude or span <= 0 or not outer.any():
            out.append(-np.inf)
            continue
        V = (V - V.min()) / span
        a, b = V[init], V[outer]
        out.append(float((a.mean() - b.mean()) ** 2 / (a.var() + b.var() + 1e-6)))
    return np.asarray(out)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Positive inside ``mask``, negative outside, in pixels."""
    return ndi.distance_transform_edt(mask) - ndi.distance_transform_edt(~mask)


def chan_vese_mask(image: np.ndarray, init: np.ndarray, cfg: SegmentConfig = SegmentConfig()) -> np.ndarray:
    """Chan–Vese (scikit-image) of a scalar image from ``init``; the side covering ``init`` is returned."""
    from skimage.segmentation import chan_vese

    img = np.asarray(image, np.float64)
    span = img.max() - img.min()
    if span <= 0:
        return np.zeros(img.shape, bool)
    img = (img - img.min()) / span
    seg = chan_vese(img, mu=cfg.mu, max_num_iter=cfg.max_num_iter, init_level_set=signed_distance(init))
    seg = np.asarray(seg, bool)
    if (seg & init).sum() < (~seg & init).sum():
        seg = ~seg
    return seg


@dataclass(frozen=True)
class SegmentResult:
    """The mask and how it was obtained."""

    mask: np.ndarray  # (H, W) bool, final
    raw: np.ndarray  # (H, W) bool, Chan–Vese result before the clean-up
    init: np.ndarray  # (H, W) bool, initial region
    locators: list[int]
    target: int
    automatic: dict = field(default_factory=dict)  # {"locators": bool, "target": bool}
    locator_scores: list = field(default_factory=list)
    target_scores: list = field(default_factory=list)
    regions: int = 0  # connected components after the clean-up, before the pair filter
    kept: int = 0  # after the pair filter


def _segment_once(dec: Decomposition, locators: list[int], target: int | None, cfg: SegmentConfig,
                  lscores: np.ndarray, automatic: dict) -> SegmentResult:
    energy = locator_energy(dec, locators, cfg.energy_sigma)  # (H, W)
    init = top_region(energy, cfg.init_quantile)
    tscores = target_scores(dec, init, exclude=locators)
    if cfg.segment_on == "energy":
        target = locators[0]  # the energy of the locators is segmented; no separate target
    elif target is None:
        if not np.isfinite(tscores).any():
            tscores = target_scores(dec, init)  # every component is a locator: allow them
        target = int(np.argmax(tscores))
    target = dec.check_index(target, "target component")
    image = energy if cfg.segment_on == "energy" else value_channel(dec.components[target])  # (H, W)
    raw = chan_vese_mask(image, init, cfg)
    lab, n = ndi.label(raw)
    min_area = cfg.min_area_fraction * raw.size
    seed = ndi.binary_dilation(init, iterations=cfg.seed_dilation) if cfg.seed_dilation else init
    for i in range(1, n + 1):
        comp = lab == i
        if comp.sum() < min_area or not (comp & seed).any():
            lab[comp] = 0
    regions = len(np.unique(lab)) - 1
    keep = row_pairs(lab, cfg.pair_row_fraction)
    if cfg.pair_rule == "strongest" and len(keep) != 2:
        keep = strongest_pair(lab, energy, cfg.pair_row_fraction)
    mask = ndi.binary_fill_holes(np.isin(lab, keep)) if keep else np.zeros_like(raw)
    return SegmentResult(mask=mask, raw=raw, init=init, locators=locators, target=target, automatic=automatic,
                         locator_scores=lscores.tolist(),
                         target_scores=[s if np.isfinite(s) else None for s in tscores.tolist()],
                         regions=regions, kept=len(keep))


def segment(dec: Decomposition, locators: Sequence[int] | None = None, target: int | None = None,
            cfg: SegmentConfig = SegmentConfig(), candidates: int = 3) -> SegmentResult:
    """App. F on one decomposition; ``locators`` / ``target`` override the automatic choice.

    With the automatic choice, the ``candidates`` best-scored locators are
    tried in score order (each with its best target) and the first result
    that keeps exactly one pair of regions is returned; if none does, the
    result of the best-scored locator.
    """
    check_segmentation(dec.num_components, dec.R.shape, 1, dec.source)
    lscores = locator_scores(dec, cfg.peak_fraction)
    automatic = {"locators": locators is None, "target": target is None}
    if locators is not None:
        locs = [[dec.check_index(k, "locator component") for k in locators]]
    else:
        locs = [[int(k)] for k in np.argsort(-lscores)[:max(1, candidates)]]
    first = None
    for loc in locs:
        res = _segment_once(dec, loc, target, cfg, lscores, automatic)
        if res.kept == 2:
            return res
        first = first or res
    return first


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A| + |B|); 1 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """|A∩B| / |A∪B|; 1 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    u = (a | b).sum()
    return 1.0 if u == 0 else float((a & b).sum() / u)


def load_mask(path, shape: tuple[int, int] | None = None, field: str = "mask") -> tuple[np.ndarray, bool]:
    """A binary mask image (non-zero = inside) → ``(mask, resized)``; resized (nearest) to ``shape`` if needed.

    An unreadable image is a :class:`~branchspec.errors.ConfigError` of ``field`` (what the caller calls ``path``).
    """
    from PIL import Image, UnidentifiedImageError

    from branchspec.errors import ConfigError

    from branchspec.data.folders import to_8bit_rgb, check_image_size

    try:
        with Image.open(path) as im:
            check_image_size(im, path)
            im = to_8bit_rgb(im).convert("L")
            resized = shape is not None and im.size != (shape[1], shape[0])
            if resized:
                im = im.resize((shape[1], shape[0]), Image.NEAREST)
            return np.asarray(im) > 127, resized
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ConfigError(field, f"cannot read mask image {path} ({type(exc).__name__})") from None


def save_segmentation(dec: Decomposition, res: SegmentResult, out_dir, truth: np.ndarray | None = None) -> dict:
    """Write mask.png / mask.npy, overlay.png, segment.npz and segment.json (App. F).

    The Fig. 21 panels (``segmentation.png``) are drawn from ``segment.npz`` by
    :func:`branchspec.figures.apps.segmentation_figure`.
    """
    from pathlib import Path

    from branchspec.apps.components import overlay, save_png, to_unit

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image = dec.input if dec.input is not None else dec.output
    atomic_write_via(out / "mask.npy", lambda buf: np.save(buf, res.mask))
    save_png(res.mask[None].astype(np.float64), out / "mask.png")
    save_png(overlay(to_unit(image, dec.value_range), res.mask), out / "overlay.png", min_size=256)
    loc_map = sum(_energy(value_channel(dec.components[k])) for k in res.locators)
    atomic_write_npz(out / "segment.npz", dict(
        image=image, value_range=np.asarray(dec.value_range), mask=res.mask, raw=res.raw, init=res.init,
        locators=np.asarray(res.locators), target=np.asarray(res.target), locator_map=loc_map,
        target_map=value_channel(dec.components[res.target])), compressed=False)
    doc = {
        "source": dec.source, "locators": res.locators, "target": res.target, "automatic": res.automatic,
        "locator_scores": res.locator_scores, "target_scores": res.target_scores,
        "mask_pixels": int(res.mask.sum()), "regions_before_pair_filter": res.regions, "regions_kept": res.kept,
        "pair_geometry": pair_geometry(res.mask), "files": ["mask.png", "mask.npy", "overlay.png", "segment.npz"],
    }
    if truth is not None:
        doc["dice"] = dice(res.mask, truth)
        doc["iou"] = iou(res.mask, truth)
    atomic_write_json(out / "segment.json", doc)
    return doc
