"""What decomposing, manipulating and segmenting allocate (§7, App. A, App. F), checked before allocating.

Each ``check_*`` adds up the bytes a workload will hold at its peak and
raises the memory budget's one-line error (:func:`branchspec.budget.check`)
naming the settings that drive it:

* reading a decomposition ``.npz`` (:func:`branchspec.budget.load_npz`): the arrays
  its npy headers claim (a header may claim 1 TiB in a 2 KB file), :data:`LOAD_COPIES` times;
* :func:`check_manipulation` — App. A: ``alphas`` × components sweep images
  (the stacked array, its ``.npz`` bytes and the float64 images of the
  figure) and ``subsets`` sums;
* :func:`check_segmentation` — App. F: Chan–Vese's float64 work arrays per pixel;
* :func:`check_decompose` — one generator pass per ``batch_size`` images:
  activations (measured on the meta device) and the M + 4 arrays per image.

Counts that cost time rather than memory have maxima: :data:`MAX_ALPHAS`
values of α, :data:`MAX_SUBSETS` subsets, :data:`MAX_PANELS` images in one
figure (matplotlib draws about 30 per second).

Example:
    >>> manipulation_bytes(m=9, shape=(3, 64, 64), k=9, a=9, s=2) < manipulation_bytes(9, (3, 64, 64), 9, 101, 2)
    True
"""

from __future__ import annotations

import math
from dataclasses import replace

from branchspec import budget
from branchspec.errors import ConfigError, UsageError

MAX_ALPHAS = 101  # values of α in one sweep: a GIF of more frames is no smoother to the eye
MAX_SUBSETS = 64  # subset sums in one subsets.png
MAX_PANELS = 2000  # images in one figure (strip.png, sweeps.png, subsets.png): about a minute of drawing
LOAD_COPIES = 3  # a decomposition as read (np.load), as float32 arrays, and the finiteness checks' masks
PANEL_BYTES = 2 * 10**6  # matplotlib's own memory per image panel (axes, artists, render cache)


def _elements(shape) -> int:
    return math.prod(int(n) for n in shape)


def check_counts(n_alphas: int = 0, n_subsets: int = 0, panels: int = 0, what: str = "") -> None:
    """The time limits: at most :data:`MAX_ALPHAS` α, :data:`MAX_SUBSETS` subsets (a ConfigError of ``alphas`` /
    ``subsets``), :data:`MAX_PANELS` panels in the figure ``what`` (a UsageError naming it)."""
    if n_alphas > MAX_ALPHAS:
        raise ConfigError("alphas", f"{n_alphas} values, over the limit of {MAX_ALPHAS}")
    if n_subsets > MAX_SUBSETS:
        raise ConfigError("subsets", f"{n_subsets} subsets, over the limit of {MAX_SUBSETS}")
    if panels > MAX_PANELS:
        raise UsageError(f"{what}: {panels} images in one figure, over the limit of {MAX_PANELS}; "
                         "choose fewer `components`, `alphas` or `subsets`")


def manipulation_bytes(m: int, shape, k: int, a: int, s: int, images: int = 1) -> int:
    """Bytes of App. A on ``images`` decompositions of ``m`` components of ``shape`` (C, H, W): ``k`` swept
    components × ``a`` values of α, ``s`` subset sums."""
    e = _elements(shape)
    held = images * (m + 4) * e * 4 + e * 8 * 4  # the decompositions, and one sweep's float64 sums
    sweeps = images * k * a * e * (4 * 4 + 8)  # float32 stack, list, npz buffer and bytes; float64 in the figure
    subsets = images * s * e * (4 * 4 + 8)
    return budget.BASELINE_BYTES + held + sweeps + subsets + (images * (k * a + s)) * PANEL_BYTES


def check_manipulation(m: int, shape, k: int, a: int, s: int, images: int = 1, source="") -> int:
    """:func:`check_counts` and :func:`manipulation_bytes` within the budget (one line naming the arguments)."""
    check_counts(a, s, images * k * a, "strip.png" if images == 1 else "sweeps.png")
    check_counts(panels=images * (s + 1), what="subsets.png")
    c, h, w = shape
    return budget.check(manipulation_bytes(m, shape, k, a, s, images),
                        f"`alphas` ({a} values) × {k} component(s){f' × {images} images' if images > 1 else ''} "
                        f"and {s} `subsets` of {source or 'the decomposition'} ({c}×{h}×{w})")


def segmentation_bytes(m: int, shape, images: int = 1) -> int:
    """Bytes of App. F on ``images`` decompositions: the arrays, and Chan–Vese's float64 work arrays and
    the figure's (about 120 bytes per pixel, measured 110)."""
    c, h, w = shape
    return budget.BASELINE_BYTES + images * (m + 4) * c * h * w * 4 + 120 * h * w * max(images, 1)


def check_segmentation(m: int, shape, images: int = 1, source="") -> int:
    c, h, w = shape
    return budget.check(segmentation_bytes(m, shape, images),
                        f"segmenting {images} decomposition(s) of {m} components of {c}×{h}×{w} ({source})")


def decompose_bytes(gen, config: dict | None, img_size: int, batch_size: int) -> int:
    """Bytes of decomposing with the generator ``gen`` (a :class:`~branchspec.Branched`; ``config``: its
    checkpoint's ``model.config`` when it is a §7 generator) at ``img_size``, ``batch_size`` images per
    pass: its weights, the activations of one no-grad pass (a quarter of what a training forward keeps,
    measured on the meta device from ``config``; measured in a real pass a fifth) and per image the input,
    output, R and M components (4 copies each)."""
    per_sample = 0
    if config is not None:
        from branchspec.models.generator import GeneratorConfig
        from branchspec.train.memory import generator_sizes

        trained = GeneratorConfig(**{"padding": "zeros", **config})
        _, per_sample = generator_sizes(replace(trained, img_size=img_size, num_down=trained.down_blocks, sigma=None))
    params = sum(p.numel() for p in gen.parameters())
    per_image = (gen.num_branches + 4) * 3 * img_size * img_size * 4 * 4
    return budget.BASELINE_BYTES + 2 * params * 4 + batch_size * (per_sample // 4 + per_image)


def check_decompose(gen, config: dict | None, img_size: int, batch_size: int) -> int:
    return budget.check(decompose_bytes(gen, config, img_size, batch_size),
                        f"`batch_size` {batch_size} with `img_size` {img_size} and {gen.num_branches} branches")
