"""The embedded default data: real photographs bundled with scikit-image.

Needs no network and no ``../shared``: scikit-image ships these photographs
inside its wheel (checked offline with scikit-image 0.26):

* domain ``"cat"``   — ``skimage.data.chelsea()`` (Stefan van der Walt's cat, 300×451);
* domain ``"other"`` — ``astronaut()`` (Eileen Collins, 512×512), ``coffee()``
  (400×600), ``rocket()`` (427×640) and the left view of
  ``stereo_motorcycle()`` (500×741).

(``skimage.data.cat()`` is the same photograph as ``chelsea()``; ``lily``,
``skin``, ``eagle`` need a download and are not used.) The training set is
``n_per_domain`` random square crops per domain (side 50-100 % of the
photograph's shorter side, random position, random horizontal flip),
resized to ``img_size`` — a reproducible function of ``seed``. It is tiny
and for demos and tests: a GAN trained on it learns to re-generate these
five photographs, which is enough to see branches specialise.

Example:
    >>> d = embedded_domains(16, n_per_domain=4)
    >>> d.images.shape, d.domains, d.counts()
    (torch.Size([8, 3, 16, 16]), ['cat', 'other'], {'cat': 4, 'other': 4})
"""

from __future__ import annotations

import numpy as np
import torch

from branchspec.data.folders import DomainImages, to_square_array

CAT = ("chelsea",)
OTHER = ("astronaut", "coffee", "rocket", "stereo_motorcycle")


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        img = img[0]  # (left, right, disparity): the left view
    return np.asarray(img, dtype=np.uint8)  # (H, W, 3)


def embedded_photos() -> dict[str, list[np.ndarray]]:
    """``{domain: [uint8 (H, W, 3) photographs]}`` — the full-size sources."""
    return {"cat": [_photo(n) for n in CAT], "other": [_photo(n) for n in OTHER]}


def _random_crops(photos: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = int(rng.uniform(0.5, 1.0) * min(h, w))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = img[top: top + side, left: left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = to_square_array(Image.fromarray(np.ascontiguousarray(crop)), size)
    return out  # (n, 3, S, S)


def embedded_domains(img_size: int, n_per_domain: int = 64, seed: int = 0) -> DomainImages:
    """Random crops of scikit-image's photographs, domains ``["cat", "other"]``."""
    rng = np.random.default_rng(seed)
    photos = embedded_photos()
    images, labels = [], []
    for label, (_, ph) in enumerate(photos.items()):
        images.append(_random_crops(ph, n_per_domain, img_size, rng))
        labels += [label] * n_per_domain
    return DomainImages(
        torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64), list(photos), "embedded"
    )


def embedded_full_images(img_size: int) -> DomainImages:
    """The whole photographs (centre square crops), one per photo: held-out style examples."""
    from PIL import Image

    photos = embedded_photos()
    images, labels = [], []
    for label, (_, ph) in enumerate(photos.items()):
        for img in ph:
            images.append(to_square_array(Image.fromarray(img), img_size))
            labels.append(label)
    return DomainImages(torch.from_numpy(np.stack(images)), torch.tensor(labels), list(photos), "embedded-full")
