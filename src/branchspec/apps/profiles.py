"""Per-component profiles: what kind of image content each branch carries (paper §7, Figs. 10–11).

§7 says each branch of the class-transfer GAN "specialises in different image
characteristics". These functions turn that into numbers per component v_k
(an array ``(C, H, W)``; a stack ``(M, C, H, W)``, branch axis first):

* **energy share** ‖v_k‖² / Σ_l ‖v_l‖²;
* **radial-frequency centroid** Σ_f |f| P_k(f) / Σ_f P_k(f), with P_k the power
  spectrum of v_k (2-D DFT, summed over channels) and |f| the radial frequency in
  cycles per pixel (0 … 0.707): low for smooth components, high for texture/edges;
* **chroma fraction** ‖v_k − mean_c v_k‖² / ‖v_k‖²: the energy outside the grey
  (luminance) direction (1, 1, 1)/√3 — 0 for a grey component, 1 for pure colour;
* **spatial entropy** −Σ p log p / log(HW) of the energy map p(h, w) ∝ Σ_c v_k²:
  1 when the energy is spread evenly over the image, 0 when it sits on one pixel;
* **transfer change** (with :func:`transfer_change`): the share of
  Σ_k ‖v_k(x, ỹ) − v_k(x, y)‖² that branch k contributes when the target domain
  changes — which component class transfer edits most;
* **input dependence** (:func:`input_dependence`, over many images x rendered
  to one target domain): Σ_x ‖v_k(x) − mean_x v_k‖² / Σ_x ‖v_k(x)‖² — 0 for a
  branch that paints the same template on every image, 1 for a zero-mean
  component that depends on x alone. A decomposition *of the image* needs it
  well above 0.

Example:
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:16, 0:16]
    >>> smooth = np.stack([np.cos(2 * np.pi * xx / 16)] * 3)             # grey, 1/16 cycles/pixel
    >>> edges = np.stack([(-1.0) ** (xx + yy), 0 * xx, 0 * xx])          # red checkerboard
    >>> p = profile_components(np.stack([smooth, edges]))
    >>> [round(c, 3) for c in p["frequency_centroid"]], [round(c, 3) for c in p["chroma_fraction"]]
    ([0.062, 0.707], [0.0, 0.667])
"""

from __future__ import annotations

import numpy as np


def _as_stack(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4:
        raise ValueError(f"components must be (M, C, H, W) or (C, H, W), got shape {v.shape}")
    return v  # (M, C, H, W)


def energy_share(v) -> np.ndarray:
    """‖v_k‖² / Σ_l ‖v_l‖², shape (M,); zeros if every component is zero."""
    e = (_as_stack(v) ** 2).sum(axis=(1, 2, 3))  # (M,)
    return e / e.sum() if e.sum() > 0 else np.zeros_like(e)


def radial_frequency(h: int, w: int) -> np.ndarray:
    """|f| in cycles per pixel of every DFT bin of an (h, w) image, shape (h, w)."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    return np.sqrt(fy**2 + fx**2)


def frequency_centroid(v) -> np.ndarray:
    """Power-weighted mean radial frequency (cycles/pixel) of every component, (M,); 0 for a zero component."""
    v = _as_stack(v)
    power = (np.abs(np.fft.fft2(v, axes=(-2, -1))) ** 2).sum(axis=1)  # (M, H, W), channels summed
    r = radial_frequency(*v.shape[-2:])  # (H, W)
    tot = power.sum(axis=(1, 2))  # (M,)
    return np.where(tot > 0, (power * r).sum(axis=(1, 2)) / np.where(tot > 0, tot, 1), 0.0)


def chroma_fraction(v) -> np.ndarray:
    """Energy outside the grey direction over total energy, (M,); 0 for a zero component."""
    v = _as_stack(v)
    chroma = v - v.mean(axis=1, keepdims=True)  # (M, C, H, W), the part with zero channel mean
    tot = (v**2).sum(axis=(1, 2, 3))
    return np.where(tot > 0, (chroma**2).sum(axis=(1, 2, 3)) / np.where(tot > 0, tot, 1), 0.0)


def spatial_entropy(v) -> np.ndarray:
    """Normalised entropy of the energy map Σ_c v_k², (M,) in [0, 1]; 1 = spread evenly (also for v = 0)."""
    v = _as_stack(v)
    e = (v**2).sum(axis=1).reshape(v.shape[0], -1)  # (M, H·W)
    tot = e.sum(axis=1, keepdims=True)
    p = np.where(tot > 0, e / np.where(tot > 0, tot, 1), 1.0 / e.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return h / np.log(e.shape[1]) if e.shape[1] > 1 else np.ones(v.shape[0])


def profile_components(v) -> dict[str, list[float]]:
    """All four profiles of one image's components ``(M, C, H, W)``, as lists of M floats."""
    return {
        "energy_share": energy_share(v).tolist(),
        "frequency_centroid": frequency_centroid(v).tolist(),
        "chroma_fraction": chroma_fraction(v).tolist(),
        "spatial_entropy": spatial_entropy(v).tolist(),
    }


def transfer_change(v_own, v_target) -> np.ndarray:
    """Per-branch ‖v_k(x, ỹ) − v_k(x, y)‖², (M,), summed over the leading axes after M.

    ``v_own``, ``v_target``: ``(M, …)`` components of the same images for the
    own and another target domain. Divide by the sum for the share.
    """
    a, b = np.asarray(v_own, np.float64), np.asarray(v_target, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return ((b - a) ** 2).reshape(a.shape[0], -1).sum(axis=1)


def input_dependence(v) -> np.ndarray:
    """Σ_n ‖v_kn − mean_n v_k‖² / Σ_n ‖v_kn‖² per branch, (M,), for components ``(M, N, …)`` of N images
    rendered to the same target domain; 0 for a component that is the same on every image (or zero)."""
    sums = DependenceSums()
    sums.add(0, v)
    return np.asarray(sums.result())


class DependenceSums:
    """:func:`input_dependence` pooled over targets and batches, from running sums (Σ v, Σ ‖v‖², n) per target."""

    def __init__(self) -> None:
        self.sums: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}  # target -> (Σ_n v (M, D), Σ_n ‖v‖² (M,), n)

    def add(self, target: int, v) -> None:
        """``v``: components (M, N, …) of N images rendered to ``target``."""
        v = np.asarray(v, np.float64)
        if v.ndim < 2:
            raise ValueError(f"components must be (M, N, ...), got shape {v.shape}")
        flat = v.reshape(v.shape[0], v.shape[1], -1)  # (M, N, D)
        first, second, n = self.sums.get(target, (0.0, 0.0, 0))
        self.sums[target] = (first + flat.sum(axis=1), second + (flat**2).sum(axis=(1, 2)), n + flat.shape[1])

    def result(self) -> list[float] | None:
        """Σ_t Σ_n ‖v − mean_t‖² / Σ_t Σ_n ‖v‖² per branch (None before any add)."""
        if not self.sums:
            return None
        spread = sum(sq - (s1**2).sum(axis=1) / n for s1, sq, n in self.sums.values())  # (M,)
        total = sum(sq for _, sq, _ in self.sums.values())
        return np.divide(spread, total, out=np.zeros_like(total), where=total > 0).clip(0, 1).tolist()


class ProfileStats:
    """Per-branch profiles averaged over images (energy share pooled: Σ energies, then shares)."""

    def __init__(self) -> None:
        self.energy: np.ndarray | None = None  # (M,) Σ over images of ‖v_k‖²
        self.sums: dict[str, np.ndarray] = {}
        self.count = 0

    def add(self, v) -> None:
        v = _as_stack(v)
        e = (v**2).sum(axis=(1, 2, 3))
        self.energy = e if self.energy is None else self.energy + e
        for k in ("frequency_centroid", "chroma_fraction", "spatial_entropy"):
            val = globals()[k](v)
            self.sums[k] = val if k not in self.sums else self.sums[k] + val
        self.count += 1

    def result(self) -> dict[str, list[float]]:
        if self.energy is None:
            raise ValueError("no components added")
        tot = self.energy.sum()
        out = {"energy_share": (self.energy / tot if tot > 0 else self.energy * 0).tolist()}
        out.update({k: (s / self.count).tolist() for k, s in self.sums.items()})
        return out
