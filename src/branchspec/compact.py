"""Compact ``.npz`` forms of large symmetric matrices, so that a shipped model's results fit in git (bottom floor).

The first-layer Hessian of the shipped CIFAR-10 model (Fig. 5 panels 3–4) is 2160 × 2160: 19 MB per matrix in
float32, and its entries, sums over 512 images, hardly compress. Fig. 5 draws
``log10(|H| + 1e-12·max|H|)`` (:func:`log_magnitude`) with a 256-colour map spread over its minimum and maximum;
:func:`pack_log_abs` keeps that, for the upper triangle only (H is symmetric; the lower triangle, equal up to
round-off, is its mirror):

* ``NAME_bins`` uint8 ``(P(P+1)/2,)``: the colour bin of each entry, ``floor(256·(D − lo)/(hi − lo))`` (255 at hi),
* ``NAME_range`` float64 ``(2,)``: ``lo, hi``, the minimum and maximum of D,
* ``NAME_negative`` uint8: the signs (``np.packbits`` of ``H < 0`` over the same triangle).

:func:`unpack_log_abs` gives back a symmetric float32 matrix whose Fig. 5 panel has the original's colours bin for
bin (the bins decode to ``lo + q·(hi − lo)/255``: the same normalisation, the same colour), and whose entries keep
their sign and lie within one bin, ``(hi − lo)/256`` decades, of the original's magnitude (the shipped model's
matrices span 8.6 and 10.7 decades: 0.034 and 0.042 decades, 8 % and 10 %); its two matrices, 2 × 19 MB in
float32, take 3.4 MB packed and compressed. The block summary of ``analysis.json`` is computed from the exact
float32 matrix before packing. :func:`load_expanded` reads an ``.npz`` holding either form (the packed one, or the
plain ``NAME`` matrices written before), checked against the memory budget first.

Example:
    >>> h = np.array([[4.0, -1e-3], [-1e-3, 2.0]])
    >>> packed = pack_log_abs(h, "h")
    >>> sorted(packed), packed["h_bins"].tolist()
    (['h_bins', 'h_negative', 'h_range'], [255, 0, 234])
    >>> unpack_log_abs(packed, "h").astype(float).round(4).tolist()  # 2.0: within one bin, 3.6 / 256 decades
    [[4.0, -0.001], [-0.001, 2.0203]]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import numpy.typing as npt

from branchspec.budget import BASELINE_BYTES, array_bytes, check, gb, load_npz, npz_arrays
from branchspec.errors import DataError

FLOOR = 1e-12  # of max|H|: added before the log, so zeros are drawn (Fig. 5) 12 decades below the largest entry
LEVELS = 256  # colours of a matplotlib colormap (magma, Fig. 5): one bin per colour
PACKED = ("_bins", "_range", "_negative")  # the arrays of one packed matrix NAME: NAME_bins, NAME_range, ...
UNPACK_COPIES = 6  # float64 (P, P) arrays counted per unpacked matrix for the budget (4.7 measured at the peak)


def log_magnitude(mat: npt.ArrayLike) -> np.ndarray:
    """``log10(|H| + FLOOR·max|H|)``: what the Hessian panels of Fig. 5 draw, zeros included."""
    a = np.abs(np.asarray(mat, dtype=np.float64))
    return np.log10(a + FLOOR * max(float(a.max(initial=0.0, where=np.isfinite(a))), 1e-30))


def pack_log_abs(mat: npt.ArrayLike, name: str) -> dict[str, np.ndarray]:
    """The symmetric matrix ``mat`` (P, P) as the three arrays ``NAME_bins``, ``NAME_range`` and ``NAME_negative``
    (module docstring); :func:`unpack_log_abs` inverts it to the colour of every entry. Non-finite entries: bin 0."""
    mat = np.asarray(mat, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"{name}: a square matrix is packed, got shape {mat.shape}")
    iu = np.triu_indices(mat.shape[0])
    d = log_magnitude(mat)[iu]  # (P(P+1)/2,) the upper triangle, row by row
    finite = np.isfinite(d)
    lo, hi = (float(d[finite].min()), float(d[finite].max())) if finite.any() else (0.0, 0.0)
    x = (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)
    bins = np.clip(np.floor(np.where(finite, x, 0.0) * LEVELS), 0, LEVELS - 1).astype(np.uint8)
    return {f"{name}_bins": bins, f"{name}_range": np.array([lo, hi]),
            f"{name}_negative": np.packbits(mat[iu] < 0)}


def triangle_side(n: int) -> int:
    """P of an upper triangle of ``n = P(P+1)/2`` entries (a :class:`DataError` if ``n`` is no such number)."""
    p = (math.isqrt(8 * n + 1) - 1) // 2
    if p * (p + 1) // 2 != n:
        raise DataError(f"{n} entries are not the upper triangle of a square matrix")
    return p


def unpack_log_abs(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """The float32 (P, P) symmetric matrix packed by :func:`pack_log_abs` as ``arrays[NAME_bins]`` etc."""
    bins, (lo, hi) = arrays[f"{name}_bins"], arrays[f"{name}_range"]
    p = triangle_side(len(bins))
    d = lo + bins.astype(np.float64) * ((hi - lo) / (LEVELS - 1))  # the bin's lower edge; 255 -> hi
    top = 10.0 ** hi  # the largest |H| + FLOOR·max|H|
    mag = np.maximum(10.0 ** d - FLOOR * top / (1 + FLOOR), 0.0)  # |H|: the floor added before the log removed
    neg = np.unpackbits(arrays[f"{name}_negative"], count=len(bins)).astype(bool)
    iu = np.triu_indices(p)
    out = np.zeros((p, p), dtype=np.float64)
    out[iu] = np.where(neg, -mag, mag)
    out.T[iu] = out[iu]  # (P, P) the lower triangle mirrored
    return out.astype(np.float32)


def packed_names(names: Iterable[str]) -> list[str]:
    """The matrices NAME held packed (``NAME_bins`` with its ``NAME_range`` and ``NAME_negative``) among ``names``."""
    names = set(names)
    return sorted(n[: -len(PACKED[0])] for n in names
                  if n.endswith(PACKED[0]) and all(n[: -len(PACKED[0])] + s in names for s in PACKED))


def load_expanded(path: str | os.PathLike[str], keys: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path`` whose names ``keys(name)`` accepts (default all), every packed matrix
    NAME (:func:`pack_log_abs`) unpacked under NAME, the old plain form passed through as it is. The bytes of the
    stored arrays (npy headers, :func:`branchspec.budget.npz_arrays`) and of the unpacked matrices are checked
    against the memory budget before anything is read."""
    headers = npz_arrays(path)
    packed = [n for n in packed_names(headers) if keys is None or keys(n)]
    inflated = sum(UNPACK_COPIES * array_bytes((p, p), "<f8")
                   for p in ((math.isqrt(8 * math.prod(headers[n + PACKED[0]][0]) + 1) - 1) // 2 for n in packed))
    stored = sum(array_bytes(*headers[k]) for k in headers if keys is None or keys(k))
    check(BASELINE_BYTES + 2 * stored + inflated, f"{path} (its arrays unpack to {gb(stored + inflated)} GB)")
    parts = {n + s for n in packed for s in PACKED}
    raw = load_npz(path, keys=lambda k: k in parts or (keys is None or keys(k)))
    out = {k: v for k, v in raw.items() if k not in parts}
    for n in packed:
        out[n] = unpack_log_abs(raw, n)
    return out
