"""Ambient-space image manipulation with a decomposition (paper App. A, Figs. 13–15).

Because the components v_k live in image space and sum to the re-generated
image, editing is arithmetic on them:

* **α-sweep** of component k (Figs. 13–14): x(α) = R + Σ_{j≠k} v_j + α·v_k;
  α = 1 gives the re-generation, α = 0 removes v_k, α > 1 amplifies it;
* **subset sums** (Fig. 15): R + Σ_{k∈S} v_k, e.g. two texture groups;
* **gains**: R + Σ_k g_k v_k for any per-component gains g.

All functions take a :class:`~branchspec.apps.components.Decomposition` and
return float arrays ``(C, H, W)`` (or ``(A, C, H, W)`` for a sweep) in the
decomposition's value range, unclipped.

Example:
    >>> import numpy as np
    >>> from branchspec.apps.components import Decomposition
    >>> v = np.stack([np.ones((1, 2, 2)), 2 * np.ones((1, 2, 2))])
    >>> d = Decomposition(R=np.zeros((1, 2, 2)), components=v, output=v.sum(0))
    >>> sweep(d, 1, [0.0, 1.0])[:, 0, 0, 0].tolist()
    [1.0, 3.0]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from branchspec.apps.components import Decomposition, to_uint8_hwc, to_unit
from branchspec.apps.memory import MAX_ALPHAS, check_manipulation
from branchspec.errors import BranchspecError, ConfigError
from branchspec.io import atomic_write_json, atomic_write_npz, atomic_write_via


def sweep(dec: Decomposition, k: int, alphas: Sequence[float]) -> np.ndarray:
    """x(α) = R + Σ_{j≠k} v_j + α·v_k for every α, ``(A, C, H, W)`` (App. A, Figs. 13–14)."""
    k = dec.check_index(k)
    vk = dec.components[k].astype(np.float64)  # (C, H, W)
    others = dec.R + dec.components.sum(0, dtype=np.float64) - vk  # (C, H, W): R + Σ_{j≠k} v_j
    a = np.asarray(alphas, np.float64).reshape(-1, 1, 1, 1)  # (A, 1, 1, 1)
    return (others[None] + a * vk[None]).astype(np.float32)  # (A, C, H, W)


def with_gains(dec: Decomposition, gains: Sequence[float]) -> np.ndarray:
    """R + Σ_k g_k v_k, ``(C, H, W)``; ``gains`` has one entry per component."""
    g = np.asarray(gains, np.float64)
    if g.shape != (dec.num_components,):
        raise BranchspecError(f"gains: need {dec.num_components} gains (one per component), got {g.size}")
    return (dec.R + np.tensordot(g, dec.components.astype(np.float64), axes=1)).astype(np.float32)


def subset_sum(dec: Decomposition, subset: Sequence[int]) -> np.ndarray:
    """R + Σ_{k∈S} v_k, ``(C, H, W)`` (Fig. 15)."""
    g = np.zeros(dec.num_components)
    for k in subset:
        g[dec.check_index(k)] = 1.0
    return with_gains(dec, g)


# --------------------------------------------------------------------- parsing
def parse_alphas(text: str, field: str = "alphas") -> list[float]:
    """``"-1:3:9"`` → 9 values evenly from −1 to 3; ``"0,0.5,2"`` → that list."""
    text = (text or "").strip()
    n: int | None = None  # COUNT of START:STOP:COUNT
    lo = hi = 0.0
    try:
        if ":" in text:
            start, stop, count = text.split(":")  # ValueError unless three parts
            lo, hi, n = float(start), float(stop), int(count)
        else:
            vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(field, f"malformed {text!r} (use START:STOP:COUNT like -1:3:9, or a list like 0,1,2)") from None
    if n is not None:
        if not 2 <= n <= MAX_ALPHAS:  # before np.linspace allocates n values
            raise ConfigError(field, f"COUNT in START:STOP:COUNT must be in 2..{MAX_ALPHAS}, got {n}")
        vals = np.linspace(lo, hi, n).tolist()
    if len(vals) > MAX_ALPHAS:
        raise ConfigError(field, f"{len(vals)} values, over the limit of {MAX_ALPHAS}")
    if not vals or not all(np.isfinite(vals)):
        raise ConfigError(field, f"no finite values in {text!r}")
    return [round(v, 10) for v in vals]


def parse_indices(text: str, m: int, field: str = "components") -> list[int]:
    """``"0,3,5"`` → [0, 3, 5], each checked against M components."""
    try:
        idx = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(field, f"malformed component list {text!r} (use e.g. 0,3,5)") from None
    if not idx:
        raise ConfigError(field, "empty component list")
    return check_indices(idx, m, field)


def check_indices(idx: Sequence[int], m: int, field: str = "components") -> list[int]:
    """``idx`` as a list if every index names one of M components, else a ConfigError of ``field``."""
    bad = [i for i in idx if not 0 <= i < m]
    if bad:
        raise ConfigError(field, f"component(s) {bad} out of range 0..{m - 1}")
    return list(idx)


def parse_gains(text: str, m: int | None, field: str = "gains") -> list[float]:
    """``"1,0,2,…"`` → M floats (any number of them when ``m`` is None: checked once M is known)."""
    try:
        g = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(field, f"malformed gains {text!r} (use M comma-separated numbers)") from None
    if not g or (m is not None and len(g) != m) or not all(np.isfinite(g)):
        raise ConfigError(field, f"need {'M' if m is None else m} finite gains (one per component), got {len(g)}")
    return g


# --------------------------------------------------------------------- writing
def write_gif(frames01: np.ndarray, path: str | os.PathLike, duration_ms: int = 250, min_size: int = 128) -> Path:
    """An animated GIF (PIL, looping, ping-pong) of ``(A, C, H, W)`` frames in [0, 1]."""
    from PIL import Image

    ims = [Image.fromarray(to_uint8_hwc(f)) for f in frames01]
    if min(ims[0].size) < min_size:
        s = -(-min_size // min(ims[0].size))
        ims = [im.resize((im.size[0] * s, im.size[1] * s), Image.NEAREST) for im in ims]
    ims = [im.convert("RGB") for im in ims]
    seq = ims + ims[-2:0:-1]  # forwards then backwards
    return atomic_write_via(path, lambda buf: seq[0].save(buf, format="GIF", save_all=True, append_images=seq[1:],
                                                          duration=duration_ms, loop=0))


def manipulate(
    dec: Decomposition,
    out_dir: str | os.PathLike,
    components: Sequence[int] | None = None,
    alphas: Sequence[float] = (-1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3),
    subsets: Sequence[Sequence[int]] = (),
    gains: Sequence[float] | None = None,
    gif: bool = True,
) -> dict:
    """Write sweeps, subset sums and gains to ``out_dir`` as arrays (App. A, Figs. 13–15).

    Files: ``sweeps.npz`` (``alphas``, ``components``, ``images`` (K, A, C, H,
    W)), ``sweep_K.gif`` per component, ``subsets.npz``, ``gains.npz``, and
    ``manipulate.json`` listing them. The figures (``strip.png``,
    ``subsets.png``, ``gains.png``) are drawn from these files by
    :func:`branchspec.figures.apps.draw_manipulation`.
    """
    comps = list(range(dec.num_components)) if components is None else [dec.check_index(k) for k in components]
    check_manipulation(dec.num_components, dec.R.shape, len(comps), len(alphas), len(subsets), source=dec.source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vr = np.asarray(dec.value_range, np.float32)
    doc: dict = {"source": dec.source, "alphas": list(alphas), "components": comps, "files": []}
    imgs = np.stack([sweep(dec, k, alphas) for k in comps])  # (K, A, C, H, W)
    atomic_write_npz(out / "sweeps.npz", dict(alphas=np.asarray(alphas, np.float32), components=np.asarray(comps),
             images=imgs, output=dec.output, value_range=vr), compressed=False)
    doc["files"].append("sweeps.npz")
    if gif:
        for i, k in enumerate(comps):
            write_gif(to_unit(imgs[i], dec.value_range), out / f"sweep_{k}.gif")
            doc["files"].append(f"sweep_{k}.gif")
    if subsets:
        sums = np.stack([subset_sum(dec, s) for s in subsets])  # (S, C, H, W)
        labels = ["re-gen."] + ["R + Σ{" + ",".join(map(str, s)) + "}" for s in subsets]
        atomic_write_npz(out / "subsets.npz", dict(images=np.concatenate([dec.output[None], sums]),
                         labels=np.asarray(labels), value_range=vr), compressed=False)
        doc["subsets"] = [list(s) for s in subsets]
        doc["files"].append("subsets.npz")
    if gains is not None:
        img = with_gains(dec, gains)
        atomic_write_npz(out / "gains.npz", dict(images=np.stack([dec.output, img]), value_range=vr,
                         labels=np.asarray(["re-gen.", "gains " + ",".join(f"{g:g}" for g in gains)])), compressed=False)
        doc["gains"] = list(gains)
        doc["files"].append("gains.npz")
    atomic_write_json(out / "manipulate.json", doc)
    return doc
