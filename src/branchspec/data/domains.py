"""The GAN's data from one ``data`` string: embedded photographs, CIFAR-10 classes or an image-folder ROOT.

The domains y of the class-transfer GAN (§7): AFHQ-style folders
``ROOT/train/<domain>/*``, CIFAR-10 classes as domains, or the embedded
scikit-image photographs. This module sits above :mod:`~branchspec.data.folders`
and :mod:`~branchspec.data.embedded`, which never import it.

Example:
    >>> load_domains("embedded", 16).images.shape[1:]
    torch.Size([3, 16, 16])
"""

from __future__ import annotations

from pathlib import Path

import torch

from branchspec.data.embedded import embedded_domains
from branchspec.data.folders import DomainImages, check_data_size, cifar_domains, load_image_folders
from branchspec.errors import ConfigError, DataError


def _is_cifar_dir(p: Path) -> bool:
    return (p / "batches.meta").is_file() and (p / "data_batch_1").is_file()


def load_domains(spec: str, img_size: int, progress: bool = True, seed: int = 0,
                 n_per_domain: int = 64) -> DomainImages:
    """The data named by a ``data`` string (:attr:`~branchspec.gan.config.GanTrainConfig.data`).

    ``"embedded"`` — ``n_per_domain`` random crops of scikit-image photographs per domain
    (see :mod:`branchspec.data.embedded`);
    a CIFAR-10 python folder (``cifar-10-batches-py``), optionally
    ``PATH:cat,dog`` to keep some classes; else an image-folder ROOT.
    Images not already ``img_size`` (CIFAR) are resized bilinearly.
    Every error is one line naming ``data``: a :class:`ConfigError` when ``spec`` names nothing, else a
    :class:`DataError` (``"`data` SPEC: ..."``); a domain without a single image (a class
    named twice, a CIFAR class absent from the files, an empty folder) is one of them, never a silent
    domain the GAN would train without.
    """
    try:
        data = _load(spec, img_size, progress, seed, n_per_domain)
    except DataError as exc:
        raise DataError(f"`data` {spec}: {exc}") from None
    counts = data.counts()
    empty = [d for d, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"`data` {spec}: domain '{empty[0]}' has no images "
                        f"({', '.join(f'{d}: {n}' for d, n in counts.items())})")
    return data


def _load(spec: str, img_size: int, progress: bool, seed: int, n_per_domain: int) -> DomainImages:
    if spec == "embedded":
        return embedded_domains(img_size, n_per_domain=n_per_domain, seed=seed)
    path, _, classes = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    p = Path(path)
    if _is_cifar_dir(p):
        data = cifar_domains(p, train=True, classes=[c for c in classes.split(",") if c] or None)
        if data.img_size != img_size:  # resized as floats: a float copy in and out of the interpolation
            check_data_size(2 * len(data), img_size, p)
            x = torch.nn.functional.interpolate(data.images.float(), size=(img_size, img_size), mode="bilinear",
                                                antialias=True, align_corners=False)
            data.images = x.round().clamp(0, 255).to(torch.uint8)
        return data
    if not p.is_dir():
        raise ConfigError("data", f"no such folder: {p} (give an image-folder ROOT, a CIFAR-10 folder or 'embedded')")
    return load_image_folders(p, img_size, progress=progress)
