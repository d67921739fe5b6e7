"""Which Chan–Vese regions form the eye pair (App. F): the row-wise multiplicity-2 rule, the strongest-pair
rule beyond the paper, and the placement check of a kept pair on aligned faces.

Arrays in (labelled regions ``(H, W)`` int, energies ``(H, W)``, masks ``(H, W)`` bool), labels or numbers
out; :func:`branchspec.apps.segmentation.segment` applies them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

PAIR_RULES = ("rows", "strongest")
"""Which regions are kept: those with row-wise multiplicity 2 (App. F); or, where that rule keeps other than one
pair, the two regions sharing rows with the most locator energy (beyond the paper: brows, nostrils and mouth
corners come in pairs too, and a lone eye region may have no partner on exactly its rows)."""


def row_pairs(labels: np.ndarray, keep_fraction: float = 0.5) -> list[int]:
    """Labels of the connected components with row-wise multiplicity 2 (App. F).

    ``labels`` ``(H, W)`` int, 0 = background. A component is kept when at
    least ``keep_fraction`` of the rows it occupies are crossed by exactly two
    components.
    """
    ids = [i for i in np.unique(labels) if i != 0]
    present = np.stack([(labels == i).any(axis=1) for i in ids]) if ids else np.zeros((0, labels.shape[0]), bool)  # (K, H)
    mult = present.sum(0)  # (H,) components per row
    keep = []
    for j, i in enumerate(ids):
        rows = present[j]
        if (mult[rows] == 2).mean() >= keep_fraction:
            keep.append(int(i))
    return keep


def strongest_pair(labels: np.ndarray, energy: np.ndarray, row_fraction: float = 0.5) -> list[int]:
    """The two labelled regions that share rows and hold the most ``energy`` together (:data:`PAIR_RULES`).

    Two regions share rows when at least ``row_fraction`` of the rows of the shorter one are rows of the
    other too. Returns their labels, or ``[]`` when no two regions share rows.

    Example:
        >>> lab = np.zeros((12, 12), int); lab[2:4, 1:3] = 1; lab[2:4, 8:10] = 2; lab[7:9, 1:3] = 3; lab[7:9, 8:10] = 4
        >>> e = np.zeros((12, 12)); e[7:9] = 1.0   # the lower pair is the stronger
        >>> strongest_pair(lab, e)
        [3, 4]
    """
    ids = [int(i) for i in np.unique(labels) if i != 0]
    masks = {i: labels == i for i in ids}
    rows = {i: m.any(axis=1) for i, m in masks.items()}
    mass = {i: float(energy[m].sum()) for i, m in masks.items()}
    best: tuple[float, list[int]] = (-np.inf, [])
    for a_pos, a in enumerate(ids):
        for b in ids[a_pos + 1:]:
            shared = (rows[a] & rows[b]).sum() / min(rows[a].sum(), rows[b].sum())
            if shared >= row_fraction and mass[a] + mass[b] > best[0]:
                best = (mass[a] + mass[b], [a, b])
    return best[1]


def pair_geometry(mask: np.ndarray, max_dy: float = 0.12, band: tuple[float, float] = (0.15, 0.7),
                  max_area_ratio: float = 4.0) -> dict:
    """Is a kept pair of regions placed like two eyes of an aligned face? (a check beyond App. F)

    The App. F rule only asks for two regions on the same rows; on a poor decomposition those can be two
    patches of the image border. On face-aligned crops (AFHQ, CelebA-HQ) two eyes lie left and right of the
    vertical midline, at about the same height inside the ``band`` of rows (fractions of the height), with
    comparable areas and away from the border. Returns the centroids (fractions of width / height), areas and
    ``eye_like``; with any number of regions but two, ``eye_like`` is False.

    Example:
        >>> m = np.zeros((20, 20), bool); m[6:9, 3:6] = True; m[6:9, 13:16] = True
        >>> pair_geometry(m)["eye_like"]
        True
        >>> m[:, :] = False; m[0:3, 3:6] = True; m[0:3, 13:16] = True   # two patches on the top border
        >>> pair_geometry(m)["eye_like"]
        False
    """
    h, w = mask.shape
    lab, n = ndi.label(mask)
    regions = []
    for i in range(1, n + 1):
        ys, xs = np.nonzero(lab == i)
        border = bool(ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1)
        regions.append({"x": float(xs.mean() / w), "y": float(ys.mean() / h), "area": int(len(ys)), "border": border})
    doc = {"regions": regions, "eye_like": False}
    if n != 2:
        return doc
    a, b = sorted(regions, key=lambda r: r["x"])
    doc["eye_like"] = bool(
        a["x"] < 0.5 < b["x"] and abs(a["y"] - b["y"]) <= max_dy
        and all(band[0] <= r["y"] <= band[1] and not r["border"] for r in (a, b))
        and max(a["area"], b["area"]) <= max_area_ratio * min(a["area"], b["area"]))
    return doc
