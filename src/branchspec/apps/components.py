"""The decomposition file (``.npz``) and the helpers that turn it into pictures.

A decomposition of one image by a branched generator (paper §7, eq. 15,
Figs. 10–11) is stored as one ``.npz`` holding plain float32 arrays:

* ``R`` ``(C, H, W)`` — the residual (over-smoothed image, App. E);
* ``components`` ``(M, C, H, W)`` — the branch outputs v_k, ambient-space
  components of the image;
* ``output`` ``(C, H, W)`` — the re-generated image *before clipping*, so
  ``R + Σ_k components[k] == output`` (to float tolerance);
* optional ``input`` ``(C, H, W)`` — the generator's input image;
* ``value_range`` ``(2,)`` — the pixel range of the arrays (the GAN works in
  [−1, 1]; [−1, 1] is assumed when the key is absent);
* optional ``domain`` (a 0-d string array) — the target domain.

Any program can write such a file (``np.savez``) and use ``branchspec
manipulate`` / ``branchspec segment`` on it.

Viewing. Components are signed and small, so they are shown *stretched*
(Fig. 10 top, "increased contrast"): ``0.5 + v / (2 s)`` clipped to [0, 1],
with s the 99th percentile of |v| over that component — zero is mid-grey and
the scale is symmetric and per component. Images (input, re-generation, R,
sums) are shown linearly: the value range is mapped to [0, 1] and clipped.

Example:
    >>> import numpy as np
    >>> d = Decomposition(R=np.zeros((3, 4, 4)), components=np.ones((2, 3, 4, 4)), output=np.full((3, 4, 4), 2.0))
    >>> d.num_components, float(d.reconstruction_error())
    (2, 0.0)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from branchspec.apps.memory import LOAD_COPIES
from branchspec.budget import load_npz
from branchspec.errors import DataError
from branchspec.io import atomic_write_npz, atomic_write_via

DEFAULT_RANGE = (-1.0, 1.0)


@dataclass(frozen=True)
class Decomposition:
    """One image's decomposition x ≈ output = R + Σ_k v_k (eq. 15)."""

    R: np.ndarray  # (C, H, W)
    components: np.ndarray  # (M, C, H, W)
    output: np.ndarray  # (C, H, W), before clipping
    input: np.ndarray | None = None  # (C, H, W)
    value_range: tuple[float, float] = DEFAULT_RANGE
    domain: str = ""
    source: str = field(default="", compare=False)  # file it came from, for messages

    def __post_init__(self):
        r, v, o = np.asarray(self.R), np.asarray(self.components), np.asarray(self.output)
        where = f" in {self.source}" if self.source else ""
        if r.ndim != 3 or r.shape[0] not in (1, 3) or min(r.shape[1:]) < 1:
            raise DataError(f"R must be (C, H, W) with C = 1 or 3 and H, W >= 1{where}, got shape {r.shape}")
        if v.ndim == 4 and v.shape[0] < 1:
            raise DataError(f"components must hold at least one branch output (M >= 1){where}, got {v.shape}")
        if v.ndim != 4 or v.shape[1:] != r.shape:
            raise DataError(f"components must be (M, C, H, W) with (C, H, W) = {r.shape}{where}, got {v.shape}")
        if o.shape != r.shape:
            raise DataError(f"output must have R's shape {r.shape}{where}, got {o.shape}")
        if self.input is not None and np.asarray(self.input).shape != r.shape:
            raise DataError(f"input must have R's shape {r.shape}{where}, got {np.asarray(self.input).shape}")
        vr = np.asarray(self.value_range)
        if vr.shape != (2,) or vr.dtype.kind not in "iuf":
            raise DataError(f"value_range must be two numbers (low, high){where}, got {vr.dtype} {vr.shape}")
        lo, hi = (float(a) for a in vr)
        if not (np.isfinite([lo, hi]).all() and hi > lo):
            raise DataError(f"value_range must be (low, high) with high > low{where}, got {self.value_range}")
        for name, a in (("R", r), ("components", v), ("output", o)):
            if not np.isfinite(a).all():
                raise DataError(f"{name} holds non-finite values{where}")

    @property
    def num_components(self) -> int:
        """M, the number of components (branches)."""
        return int(self.components.shape[0])

    def energies(self) -> np.ndarray:
        """‖v_k‖² for every k, ``(M,)`` float64, one component at a time (a float64 copy of all M
        components would take twice the file's memory)."""
        return np.array([np.square(v, dtype=np.float64).sum() for v in self.components])

    def reconstruction_error(self) -> float:
        """max |R + Σ_k v_k − output|: 0 up to float rounding for a faithful file."""
        return float(np.abs(self.R + self.components.sum(0) - self.output).max())

    def check_index(self, k: int, arg: str = "component") -> int:
        """``k`` if 0 ≤ k < M, else a one-line error naming ``arg``."""
        if not 0 <= int(k) < self.num_components:
            raise DataError(f"{arg} {k} out of range: the decomposition has components 0..{self.num_components - 1}")
        return int(k)

    # ----------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the ``.npz`` atomically (temp file + rename)."""
        path = Path(path)
        arrays = {
            "R": np.asarray(self.R, np.float32),
            "components": np.asarray(self.components, np.float32),
            "output": np.asarray(self.output, np.float32),
            "value_range": np.asarray(self.value_range, np.float32),
            "domain": np.asarray(self.domain),
        }
        if self.input is not None:
            arrays["input"] = np.asarray(self.input, np.float32)
        return atomic_write_npz(path, arrays, compressed=False)

    @staticmethod
    def load(path: str | os.PathLike) -> "Decomposition":
        """Read a decomposition ``.npz``; a one-line error if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"no such decomposition file: {path}")
        data = _read_npz(path)
        missing = [k for k in ("R", "components", "output") if k not in data]
        if missing:
            raise DataError(f"{path} is not a decomposition: missing array(s) {', '.join(missing)}")
        for k in ("R", "components", "output", "input"):
            if k in data and data[k].dtype.kind not in "iuf":
                raise DataError(f"{path}: array {k!r} must be numeric, got dtype {data[k].dtype}")
        dom = data.get("domain")
        return Decomposition(
            R=data["R"].astype(np.float32),
            components=data["components"].astype(np.float32),
            output=data["output"].astype(np.float32),
            input=data["input"].astype(np.float32) if "input" in data else None,
            value_range=_value_range(data.get("value_range"), path),
            domain=str(dom) if dom is not None and dom.dtype.kind in "US" and dom.ndim == 0 else "",
            source=str(path),
        )


def _value_range(a: np.ndarray | None, path: Path) -> tuple[float, float]:
    if a is None:
        return DEFAULT_RANGE
    if a.shape != (2,) or a.dtype.kind not in "iuf":
        raise DataError(f"{path}: value_range must be two numbers (low, high), got {a.dtype} {a.shape}")
    return float(a[0]), float(a[1])


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``, their sizes read from the npy headers and checked against the memory budget
    (:func:`branchspec.budget.load_npz`) *before* anything is inflated or allocated."""
    return load_npz(path, copies=LOAD_COPIES)


# --------------------------------------------------------------------- viewing
def to_unit(a: np.ndarray, value_range=DEFAULT_RANGE) -> np.ndarray:
    """Map an image from ``value_range`` to [0, 1], clipped (linear, no stretch)."""
    lo, hi = value_range
    return np.clip((np.asarray(a, np.float64) - lo) / (hi - lo), 0.0, 1.0)


def stretch(v: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Contrast-stretch a signed component for viewing: ``0.5 + v/(2s)`` in [0, 1].

    s is the ``percentile`` of |v| over the whole component, so zero maps to
    mid-grey and 99 % of the values are shown unclipped (Fig. 10 top). An
    all-zero component is uniformly grey.

    Example:
        >>> stretch(np.array([-2.0, 0.0, 2.0]), percentile=100).tolist()
        [0.0, 0.5, 1.0]
    """
    v = np.asarray(v, np.float64)
    s = float(np.percentile(np.abs(v), percentile)) if v.size else 0.0
    if s <= 0:
        return np.full_like(v, 0.5)
    return np.clip(0.5 + v / (2 * s), 0.0, 1.0)


def to_uint8_hwc(img01: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] → (H, W, C) uint8 (C = 1 becomes (H, W))."""
    a = np.clip(np.asarray(img01) * 255.0 + 0.5, 0, 255).astype(np.uint8)  # (C, H, W)
    a = np.moveaxis(a, 0, -1)  # (H, W, C)
    return a[..., 0] if a.shape[-1] == 1 else a


def save_png(img01: np.ndarray, path: str | os.PathLike, min_size: int = 0) -> Path:
    """Write a (C, H, W) [0, 1] array as PNG, upscaled (nearest) to at least ``min_size`` px."""
    from PIL import Image

    path = Path(path)
    im = Image.fromarray(to_uint8_hwc(img01))
    if min_size and min(im.size) < min_size:
        scale = -(-min_size // min(im.size))
        im = im.resize((im.size[0] * scale, im.size[1] * scale), Image.NEAREST)
    return atomic_write_via(path, lambda buf: im.save(buf, format="PNG"))


def overlay(image01: np.ndarray, mask: np.ndarray, color=(1.0, 0.1, 0.1), alpha: float = 0.5) -> np.ndarray:
    """(C, H, W) image in [0, 1] with ``mask`` tinted; returns (3, H, W) in [0, 1]."""
    img = np.asarray(image01, np.float64)
    if img.shape[0] == 1:
        img = np.repeat(img, 3, axis=0)
    col = np.asarray(color, np.float64)[:, None, None]  # (3, 1, 1)
    m = np.asarray(mask, bool)[None]  # (1, H, W)
    return np.where(m, (1 - alpha) * img + alpha * col, img)
