"""What the §7 decomposition reads besides the generator: held-out files, new crops, the judge's images.

Errors are one line naming the :class:`~branchspec.experiments.gan.Decompose`
field (``held_out``, ``judge``, ``judge_data``); the ``decompose`` command
renames them to its flags.
"""

from __future__ import annotations

from pathlib import Path

import torch

from branchspec.errors import ConfigError


def held_out_files(state: dict, ckpt: str) -> list[Path]:
    """The held-out image files recorded by ``train-gan --holdout`` (that still exist)."""
    rec = state.get("held_out") or {}
    files = [Path(f) for f in rec.get("files", [])]
    if not files:
        raise ConfigError("held_out", f"checkpoint {ckpt} records no held-out images (train with `holdout` N to "
                                      "hold some out)")
    missing = [f for f in files if not f.is_file()]
    if len(missing) == len(files):
        raise ConfigError("held_out", f"none of the {len(files)} held-out files exists any more (first: {files[0]})")
    return [f for f in files if f.is_file()]


def write_crops(img_size: int, per_domain: int, seed: int, folder: Path) -> list[Path]:
    """New random crops of the embedded photographs as PNGs in ``folder/<domain>/`` (held-out crops)."""
    from PIL import Image

    from branchspec.data.embedded import embedded_domains

    data = embedded_domains(img_size, n_per_domain=per_domain, seed=seed)
    paths = []
    for i in range(len(data)):
        d = data.domains[int(data.labels[i])]
        p = Path(folder) / d / f"{d}_{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(p)
        paths.append(p)
    return paths


def judge_images(spec, paths, domains, size, value_range, limit):
    """(x, y) the judge scores: ``spec`` (CIFAR test split / image folder) or the decomposed ``paths``."""
    from branchspec.apps.decompose import image_domain, load_image
    from branchspec.data.folders import cifar_domains, load_image_folders

    if not spec:
        xs, ys = [], []
        for p in paths[:limit]:
            try:
                xs.append(load_image(p, size, value_range))
            except (OSError, ValueError, SyntaxError):
                continue
            ys.append(domains.index(image_domain(Path(p), domains, field="domain")))
        if not xs:
            raise ConfigError("judge", "none of the images could be read")
        return torch.stack(xs), torch.tensor(ys)
    root = Path(spec)
    if (root / "batches.meta").is_file():
        data = cifar_domains(root, train=False, classes=list(domains))
    elif root.is_dir():
        split = next((s for s in ("val", "test", "train") if (root / s).is_dir()), None)
        if split is None:
            raise ConfigError("judge_data", f"{root} has no val/, test/ or train/ folder")
        data = load_image_folders(root, size, split=split, progress=False)
    else:
        raise ConfigError("judge_data", f"no such folder: {root}")
    if data.img_size != size:
        raise ConfigError("judge_data", f"images are {data.img_size}² but the generator works at {size}²")
    keep = [i for i, lab in enumerate(data.labels.tolist()) if data.domains[lab] in domains][:limit]
    if not keep:
        raise ConfigError("judge_data", f"no images of the domains {', '.join(domains)} in {root}")
    x, y = data.batch(torch.tensor(keep))  # (N, C, S, S) in [-1, 1]
    y = torch.tensor([domains.index(data.domains[lab]) for lab in y.tolist()])
    lo, hi = value_range
    return (x + 1) / 2 * (hi - lo) + lo, y
