"""Decompose images with a trained branched generator (paper §7, App. D; Figs. 9–11, 18–20).

One pass of the generator per batch, ``f, v, R = gen.forward_all(x, y)``,
gives the re-generated image f = R + Σ_k v_k(x, y) (eq. 15) and its M
ambient-space components v_k. For every image this module writes

* ``NAME.npz`` (NAME: the image's stem made a safe, unique name by
  :func:`output_name`) — ``R`` (C, H, W), ``components`` (M, C, H, W),
  ``output`` (C, H, W) before clipping, ``input``, ``value_range``, ``domain`` (see
  :mod:`branchspec.apps.components`);
* ``NAME/regen.png``, ``NAME/R.png`` — re-generation and residual;
* ``NAME/branch_K.png`` — each component, contrast-stretched (Fig. 10 top);
* ``NAME/added_K.png`` — the re-generation plus that component, without
  amplification (Fig. 10 bottom);

and, over all images, ``decomposition.json`` (the §4 metrics of
:mod:`branchspec.apps.decomp_stats` on the components, with the per-branch
profiles of :mod:`branchspec.apps.profiles`), ``grid.png`` (Figs. 10–11) and
``profiles.png``. The target domain of an image is its own — the name of the folder it
is in, when that is one of the generator's domains — unless ``domain`` is
given. Corrupt or unreadable images are skipped and counted.

Example:
    >>> from branchspec.loading import load_model
    >>> gen, state = load_model("run/checkpoints/last")  # doctest: +SKIP
    >>> res = decompose_images(gen, ["cat.jpg"], "out", state["domains"], img_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from branchspec.io import atomic_write_json, safe_stem
from branchspec.apps.components import DEFAULT_RANGE, Decomposition, save_png, stretch, to_unit
from branchspec.apps.decomp_stats import DecompositionStats
from branchspec.branched import Branched, as_branched
from branchspec.errors import CheckpointError, ConfigError, DataError, UsageError
from branchspec.models.generator import generator_labels, is_source_aware

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def find_images(paths: Iterable[str | os.PathLike], field: str = "images") -> list[Path]:
    """Files given as such, plus every image file under each folder (sorted, recursive).

    A path that does not exist, or a folder without any image, is a one-line
    :class:`~branchspec.errors.ConfigError` of ``field``.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise ConfigError(field, f"no image files ({', '.join(IMAGE_EXTS)}) under {p}")
            out.extend(found)
        else:
            raise ConfigError(field, f"no such file or folder: {p}")
    if not out:
        raise ConfigError(field, "no images given")
    return out


def load_image(path: str | os.PathLike, img_size: int, value_range=DEFAULT_RANGE) -> Tensor:
    """RGB image → centre square crop → ``img_size``² (bicubic) → (3, S, S) in ``value_range``.

    Raises ``OSError`` / ``ValueError`` for a corrupt or unreadable file.
    """
    from branchspec.data.folders import open_image, to_square_array  # the training pre-processing

    with open_image(path) as im:  # DataError (one line) for a decompression bomb
        im.load()
        a = torch.from_numpy(to_square_array(im, img_size)).float() / 255.0  # (3, S, S) in [0, 1]
    lo, hi = value_range
    return a * (hi - lo) + lo


def load_generator(ckpt, device: str = "cpu", field: str = "checkpoint"):
    """``(generator, domains, img_size, value_range, state)`` of a ``train-gan`` checkpoint (§7).

    One-line errors name the checkpoint as ``field`` (what the caller calls ``ckpt``): a missing one is a
    :class:`~branchspec.errors.ConfigError`, one without domains a ``"field: ..."`` :class:`CheckpointError`.
    """
    from branchspec.loading import load_model
    from branchspec.checkpoint import checkpoint_exists, checkpoint_paths

    _, spath = checkpoint_paths(ckpt)
    if not checkpoint_exists(ckpt):
        raise ConfigError(field, f"no such checkpoint: {ckpt} (looked for {spath})")
    model, state = load_model(ckpt, device=device)
    gen = as_branched(model, "branched generator")
    domains = state.get("domains")
    if not isinstance(domains, list) or not domains:
        raise CheckpointError(f"{field}: {ckpt} does not list its domains (no 'domains' in its state)")
    vr = tuple(state.get("value_range", (-1.0, 1.0)))
    return gen, [str(d) for d in domains], state.get("img_size"), vr, state


def image_domain(path: Path, domains: Sequence[str], override: str | None = None, field: str = "domain") -> str:
    """Target domain: ``override`` if given, else the image's folder name if it is a domain.

    Raises a :class:`~branchspec.errors.ConfigError` of ``field`` (what the caller calls the override) when
    neither applies.
    """
    if override is not None:
        if override not in domains:
            raise ConfigError(field, f"unknown domain {override!r}; the generator knows {', '.join(domains)}")
        return override
    if path.parent.name in domains:
        return path.parent.name
    raise ConfigError(field, f"{path} is not in a folder named after a domain ({', '.join(domains)}); name the "
                             "target domain")


@torch.no_grad()
def decompose_batch(gen: Branched, x: Tensor, y: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass ``f, v, R = gen.forward_all(x, y)`` → numpy ``(output, components, R)``.

    Shapes: output ``(B, C, H, W)``, components ``(M, B, C, H, W)`` (branch
    axis first), R ``(B, C, H, W)`` (zeros when the generator has no
    residual). ``output == R + Σ_k components[k]`` up to float rounding, as
    the silencing gains are 1 in a freshly loaded generator.
    """
    f, v, r = gen.forward_all(x, y)  # (B, C, H, W), (M, B, C, H, W), (B, C, H, W) | None
    if r is None:
        r = torch.zeros_like(f)
    gain = gen.branch_gain.to(v.dtype).view(-1, *([1] * (v.dim() - 1)))  # (M, 1, 1, 1, 1)
    v = gain * v  # what f actually sums (identity unless branches are silenced)
    return f.float().cpu().numpy(), v.float().cpu().numpy(), r.float().cpu().numpy()


@dataclass
class DecomposeResult:
    """What :func:`decompose_images` wrote."""

    npz: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path (reason)"
    sources: dict[str, str] = field(default_factory=dict)  # output name -> the image's stem
    summary: dict = field(default_factory=dict)  # the content of decomposition.json
    json_path: Path | None = None


RESERVED_NAMES = frozenset({"decomposition", "grid", "correlation", "added", "profiles", "transfer", "heldout",
                            "experiment", "summary"})
"""Stems of what a decomposition writes beside the per-image files (``decomposition.json``, ``grid.png``, the
held-out crops' ``heldout/``, the experiment's ``summary.json`` …): never an image's output name."""

MAX_NAME = 100  # characters of an output name: NAME.npz and NAME/added_K.png stay far below the 255 of a file name


def output_name(stem: str, used: set[str]) -> str:
    """A safe, unique output name for an image of stem ``stem``: ``out/NAME.npz`` and the folder ``out/NAME/``.

    Characters other than ``A-Z a-z 0-9 _ -`` become ``_`` (so ``..``, ``.``, ``a/b`` or ``grid.png`` can
    neither leave ``out`` nor take the name of a file with an extension), the name is cut to
    :data:`MAX_NAME` characters, and a name that is empty, reserved (:data:`RESERVED_NAMES`) or already in
    ``used`` (compared case-insensitively, for case-insensitive file systems) gets ``_2``, ``_3``, …
    ``used`` (lower-case names) is updated.

    Example:
        >>> used = set()
        >>> [output_name(s, used) for s in ("cat_001", "..", "grid", "Cat_001", "a b")]
        ['cat_001', '__', 'grid_2', 'Cat_001_2', 'a_b']
    """
    base = safe_stem(stem, MAX_NAME) or "image"
    name, i = base, 2
    while name.lower() in used or name.lower() in RESERVED_NAMES:
        name, i = f"{base}_{i}", i + 1
    used.add(name.lower())
    return name


def write_pngs(dec: Decomposition, folder: Path, min_size: int = 0) -> list[Path]:
    """regen.png, R.png, branch_K.png (stretched) and added_K.png (Fig. 10 rows) for one image."""
    vr = dec.value_range
    out = [save_png(to_unit(dec.output, vr), folder / "regen.png", min_size),
           save_png(to_unit(dec.R, vr), folder / "R.png", min_size)]
    if dec.input is not None:
        out.append(save_png(to_unit(dec.input, vr), folder / "input.png", min_size))
    for k, v in enumerate(dec.components):
        out.append(save_png(stretch(v), folder / f"branch_{k}.png", min_size))
        out.append(save_png(to_unit(dec.output + v, vr), folder / f"added_{k}.png", min_size))
    return out


def decompose_images(
    gen,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    domains: Sequence[str],
    img_size: int,
    domain: str | None = None,
    batch_size: int = 8,
    value_range=DEFAULT_RANGE,
    png_min_size: int = 0,
    progress: bool = False,
    device: str | torch.device = "cpu",
    face_regions: bool = False,
) -> DecomposeResult:
    """Decompose every image of ``paths`` (files) and write the results to ``out_dir``.

    Domains are resolved (and bad ones reported) before any image is
    processed. Returns a :class:`DecomposeResult`; ``decomposition.json``
    holds the statistics over all images (see :class:`DecompositionStats`)
    plus the list of skipped files. The grid of Figs. 10–11 and the component
    profiles are drawn from these files by :mod:`branchspec.figures.decomposition`.
    """
    gen = as_branched(gen, "branched generator").to(device).eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [(Path(p), image_domain(Path(p), domains, domain)) for p in paths]
    lost = [p for p, _ in targets if p.parent.name not in domains]
    if lost and is_source_aware(gen):  # it is told each image's own domain: the folder name
        raise UsageError(f"{lost[0]}: a source-aware generator needs each image in a folder named after its own "
                         f"domain ({', '.join(domains)})")
    res = DecomposeResult()
    stats = DecompositionStats(face_regions=face_regions)
    used: set[str] = set()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(targets), desc="decompose", unit="img")
    for start in range(0, len(targets), batch_size):
        chunk = targets[start:start + batch_size]
        xs, ys, sources, names = [], [], [], []
        for p, d in chunk:
            try:
                xs.append(load_image(p, img_size, value_range))
            except (OSError, ValueError, SyntaxError, DataError) as exc:  # corrupt, or a decompression bomb
                res.skipped.append(f"{p} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
                continue
            ys.append(domains.index(d))
            sources.append(domains.index(p.parent.name) if p.parent.name in domains else -1)
            names.append((p, d))
        if xs:
            x = torch.stack(xs).to(device)  # (B, C, H, W)
            y = torch.tensor(ys, dtype=torch.long, device=device)  # (B,) targets
            y = generator_labels(gen, torch.tensor(sources, dtype=torch.long, device=device), y)
            f, v, r = decompose_batch(gen, x, y)  # (B,C,H,W), (M,B,C,H,W), (B,C,H,W)
            xin = x.float().cpu().numpy()
            for b, (p, d) in enumerate(names):
                dec = Decomposition(R=r[b], components=v[:, b], output=f[b], input=xin[b],
                                    value_range=tuple(value_range), domain=d)
                name = output_name(p.stem, used)  # always a plain name inside out_dir
                res.sources[name] = p.stem
                res.npz.append(dec.save(out_dir / f"{name}.npz"))
                write_pngs(dec, out_dir / name, png_min_size)
                stats.add(dec)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    summary = stats.result() if stats.count else {"images": 0}
    summary.update({
        "skipped": len(res.skipped),
        "skipped_files": res.skipped,
        "img_size": img_size,
        "value_range": list(value_range),
        "files": [p.name for p in res.npz],
        "sources": dict(res.sources),  # output name -> the image's stem (segment --eyes finds marks by it)
        "domains": list(domains),
        "target_domain": domain or "own (folder name)",
    })
    res.summary = summary
    res.json_path = out_dir / "decomposition.json"
    atomic_write_json(res.json_path, summary)
    return res


def add_to_summary(json_path: str | os.PathLike, key: str, value) -> dict:
    """Add ``{key: value}`` to a written decomposition.json (atomically); returns the new content."""
    path = Path(json_path)
    doc = json.loads(path.read_text())
    doc[key] = value
    atomic_write_json(path, doc)
    return doc
