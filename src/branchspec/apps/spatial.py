"""Where a component puts its energy: border frames and localisation on aligned faces (§7, Figs. 10–11, 18–20).

A meaningful decomposition (fur, whiskers, spots; lighting, face parts) has
components whose energy sits on the object, not on the image border. Two
measures over many decompositions, from each branch's *energy map* — the
per-pixel energy Σ_c v_k(x)[c]² summed over images, shape (M, H, W):

* **border ratio** (:func:`border_ratio`): the share of a branch's energy in
  the outer band of width ``max(1, round(side / 20))`` divided by that band's
  share of the area. 1.0 = no preference for the border; a zero-padded
  generator draws a frame in every branch (ratios 2.7 on average, 4.0 at
  worst on CIFAR); a decomposition without frames stays near 1, or near the
  ratio of the image content itself — the detail x − R the branches add,
  reported beside it (``border_ratio_detail``): on face crops hair and
  background make the border busier than the cheeks.
* **localisation** (:func:`localisation`): the normalised entropy of each
  branch's energy map (1 = uniform over the image, 0 = one pixel) and its
  share in named regions. :data:`FACE_REGIONS` are the regions of an aligned
  face in the crop of utkface-128 (the mean face puts the eyes near
  (row, col) = (0.28, 0.28) and (0.28, 0.71) of the side, the mouth near
  (0.72, 0.5)); they are boxes, not a face parsing.

Arrays in, numbers out; :class:`SpatialStats` accumulates the energy maps one
decomposition at a time so nothing large is held.

Example:
    >>> import numpy as np
    >>> e = np.ones((2, 20, 20)); e[1, 0, :] = 10.0  # branch 1 has a bright top row
    >>> r = border_ratio(e)
    >>> round(float(r[0]), 3), bool(r[1] > 1.5)
    (1.0, True)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

Region = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (rows, cols) in [0, 1) -> bool mask


def _box(r0: float, r1: float, c0: float, c1: float) -> Region:
    return lambda r, c: (r >= r0) & (r < r1) & (c >= c0) & (c < c1)


def _background(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    return ((c - 0.5) / 0.47) ** 2 + ((r - 0.52) / 0.56) ** 2 > 1.0  # outside the face ellipse


def _eyes(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    return _box(0.21, 0.35, 0.17, 0.39)(r, c) | _box(0.21, 0.35, 0.60, 0.82)(r, c)


def _hair(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (r < 0.13) & ~_background(r, c)


FACE_REGIONS: dict[str, Region] = {
    "eyes": _eyes,
    "mouth": _box(0.64, 0.80, 0.33, 0.67),
    "hair": _hair,
    "background": _background,
}
EYE_CENTRES = ((0.28, 0.28), (0.28, 0.71))  # (row, col) fractions of the side, utkface-128's mean face


def region_masks(h: int, w: int, regions: dict[str, Region] = FACE_REGIONS) -> dict[str, np.ndarray]:
    """Boolean (H, W) masks of ``regions`` on an image of ``h`` × ``w`` pixels (pixel centres)."""
    r = (np.arange(h)[:, None] + 0.5) / h  # (H, 1)
    c = (np.arange(w)[None, :] + 0.5) / w  # (1, W)
    r, c = np.broadcast_arrays(r, c)
    return {name: np.asarray(fn(r, c), bool) for name, fn in regions.items()}


def energy_maps(v: np.ndarray) -> np.ndarray:
    """Per-pixel energy of each component: (M, C, H, W) → (M, H, W), Σ_c v²."""
    v = np.asarray(v, np.float64)
    return (v**2).sum(1)


def border_band(side: int) -> int:
    """Width of the outer band of the border ratio: side / 20, at least one pixel."""
    return max(1, int(round(side / 20)))


def border_ratio(energy: np.ndarray, band: int | None = None) -> np.ndarray:
    """(M,) share of each map's energy in the outer band / that band's share of the area.

    ``energy`` (M, H, W) energy maps (non-negative); ``band`` defaults to
    :func:`border_band` of the shorter side. A branch without energy gets 1.0.
    """
    e = np.asarray(energy, np.float64)
    h, w = e.shape[-2:]
    b = border_band(min(h, w)) if band is None else band
    mask = np.zeros((h, w), bool)
    mask[:b], mask[-b:], mask[:, :b], mask[:, -b:] = True, True, True, True
    total = e.sum((-2, -1))  # (M,)
    share = e[..., mask].sum(-1) / np.where(total > 0, total, 1.0)
    ratio = share / mask.mean()
    return np.where(total > 0, ratio, 1.0)


def normalised_entropy(energy: np.ndarray) -> np.ndarray:
    """(M,) entropy of each energy map as a distribution over pixels, / log(H·W): 1 uniform, 0 one pixel."""
    e = np.asarray(energy, np.float64).reshape(len(energy), -1)  # (M, H·W)
    p = e / np.where(e.sum(1, keepdims=True) > 0, e.sum(1, keepdims=True), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(1)
    return h / np.log(e.shape[1]) if e.shape[1] > 1 else np.zeros(len(e))


def localisation(energy: np.ndarray, regions: dict[str, Region] = FACE_REGIONS) -> dict[str, list[float]]:
    """Each branch's normalised entropy and its energy share in every region, with each region's area.

    Returns ``{"entropy": [M], "share": {region: [M]}, "area": {region: float}}``;
    a branch is localised in a region when its share clearly exceeds the
    region's area (a uniform map has share = area).
    """
    e = np.asarray(energy, np.float64)
    masks = region_masks(*e.shape[-2:], regions)
    total = e.sum((-2, -1))
    total = np.where(total > 0, total, 1.0)
    return {
        "entropy": normalised_entropy(e).tolist(),
        "share": {name: (e[:, m].sum(-1) / total).tolist() for name, m in masks.items()},
        "area": {name: float(m.mean()) for name, m in masks.items()},
    }


class SpatialStats:
    """Energy maps Σ_images Σ_c v_k² accumulated one decomposition at a time; :meth:`result` → numbers."""

    def __init__(self) -> None:
        self.energy: np.ndarray | None = None  # (M, H, W)
        self.count = 0

    def add(self, components: np.ndarray) -> None:
        """Add one image's components, (M, C, H, W)."""
        e = energy_maps(components)
        if self.energy is not None and e.shape != self.energy.shape:
            raise ValueError(f"components of shape {e.shape} cannot be pooled with {self.energy.shape}")
        self.energy = e if self.energy is None else self.energy + e
        self.count += 1

    def result(self, regions: dict[str, Region] | None = None) -> dict:
        """Border ratio per branch (mean, worst), entropy, and region shares when ``regions`` is given."""
        if self.energy is None:
            raise ValueError("no decomposition added")
        ratio = border_ratio(self.energy)
        out = {
            "images": self.count,
            "border_band": border_band(min(self.energy.shape[-2:])),
            "border_ratio": ratio.tolist(),
            "border_ratio_mean": float(ratio.mean()),
            "border_ratio_max": float(ratio.max()),
            "spatial_entropy": normalised_entropy(self.energy).tolist(),
        }
        if regions is not None:
            out["regions"] = localisation(self.energy, regions)
        return out


def pair_on_eyes(regions: list[dict], centres=EYE_CENTRES, tol: float = 0.1) -> bool:
    """True if exactly two regions were kept and each lies on its own eye.

    ``regions``: ``[{"x": col, "y": row, …}]`` centroids as fractions of the side
    (:func:`branchspec.apps.segmentation.pair_geometry`); ``centres``: the two
    eye centres as (row, col) fractions — :data:`EYE_CENTRES` for aligned
    faces, or the marks of one image. Each region must lie within ``tol`` (a
    fraction of the side, Euclidean) of a different centre.

    Example:
        >>> pair_on_eyes([{"x": 0.3, "y": 0.27}, {"x": 0.69, "y": 0.3}])
        True
        >>> pair_on_eyes([{"x": 0.3, "y": 0.7}, {"x": 0.7, "y": 0.7}])  # a pair on the mouth row
        False
    """
    if len(regions) != 2 or len(centres) != 2:
        return False

    def near(r: dict, c) -> bool:
        return float(np.hypot(r["y"] - c[0], r["x"] - c[1])) <= tol

    a, b = regions
    return (near(a, centres[0]) and near(b, centres[1])) or (near(a, centres[1]) and near(b, centres[0]))


def eye_marks(spec: str) -> dict:
    """The true eye centres a folder of segmentations is scored against: ``{"*": EYE_CENTRES}`` for
    ``"aligned-face"``, else the JSON file ``spec`` mapping image names to ``[[row, col], [row, col]]``
    fractions of the side (keys starting with ``"_"`` are comments). A bad file raises ValueError.

    Example:
        >>> eye_marks("aligned-face")
        {'*': [[0.28, 0.28], [0.28, 0.71]]}
    """
    if spec == "aligned-face":
        return {"*": [list(c) for c in EYE_CENTRES]}
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        marks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path} is not readable JSON ({type(exc).__name__})") from None
    if isinstance(marks, dict):  # keys starting with "_" are comments
        marks = {k: v for k, v in marks.items() if not k.startswith("_")}
    ok = isinstance(marks, dict) and all(
        isinstance(v, list) and len(v) == 2 and all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(t, (int, float)) and not isinstance(t, bool)
                                                        and math.isfinite(t) and 0 <= t <= 1 for t in c) for c in v)
        for v in marks.values())
    if not ok:
        raise ValueError(f"{path} must map image names to [[row, col], [row, col]] fractions in [0, 1]")
    return marks
