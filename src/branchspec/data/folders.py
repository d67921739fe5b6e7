"""Images with domain labels for the class-transfer GAN (paper §7).

Sources, all returned as one :class:`DomainImages` (uint8 images in memory):

* :func:`load_image_folders` — the AFHQ / CelebA-HQ layout
  ``ROOT/train/<domain>/*.jpg|*.png`` (StarGAN-v2's), every image centre-
  cropped to a square and resized to ``img_size``. A corrupt or unreadable
  file is skipped and counted (``DomainImages.skipped``), never ends a run; a
  missing ``train/`` or an empty domain is a one-line
  :class:`~branchspec.errors.BranchspecError`.
* :func:`cifar_domains` — CIFAR-10 classes as domains (python format, read by
  :func:`branchspec.data.cifar.load_cifar10`).
* :func:`branchspec.data.embedded.embedded_domains` — real photographs bundled
  with scikit-image, for the demo and the tests.
* :func:`branchspec.data.domains.load_domains` — picks one of them from a ``data`` string.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for d in ("cat", "dog"):
    ...     (root / "train" / d).mkdir(parents=True)
    ...     Image.new("RGB", (40, 30), (200, 10, 10)).save(root / "train" / d / "a.png")
    >>> data = load_image_folders(root, img_size=16, progress=False)
    >>> data.images.shape, data.domains, data.skipped
    (torch.Size([2, 3, 16, 16]), ['cat', 'dog'], 0)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from branchspec import budget
from branchspec.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class DomainImages:
    """Images and domain labels held in memory.

    ``images`` uint8 (N, C, S, S); ``labels`` int64 (N,) indexing ``domains``;
    ``skipped`` the number of unreadable files left out; ``skipped_files``
    their paths; ``source`` where the data came from (for run records);
    ``files`` the source file of every image (folders only, else empty).
    """

    images: Tensor
    labels: Tensor
    domains: list[str]
    source: str
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def img_size(self) -> int:
        return int(self.images.shape[-1])

    def batch(self, idx: Tensor, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        """Images in [-1, 1] as float (B, C, S, S) and labels (B,) for indices ``idx``."""
        x = self.images[idx].to(device).float() / 127.5 - 1.0  # (B, C, S, S)
        return x, self.labels[idx].to(device)

    def subset(self, idx: Tensor) -> "DomainImages":
        """The images at ``idx`` (same domains)."""
        files = [self.files[i] for i in idx.tolist()] if self.files else []
        return DomainImages(self.images[idx], self.labels[idx], self.domains, self.source, 0, [], files)

    def split_holdout(self, per_domain: int) -> tuple["DomainImages", "DomainImages"]:
        """``(train, held_out)``: the last ``per_domain`` images of every domain are held out."""
        keep, out = [], []
        for d in range(len(self.domains)):
            idx = torch.nonzero(self.labels == d).flatten()
            if per_domain >= len(idx):
                raise DataError(f"cannot hold out {per_domain} of the {len(idx)} images of domain '{self.domains[d]}'")
            cut = len(idx) - per_domain
            keep.append(idx[:cut])
            out.append(idx[cut:])
        train, held = self.subset(torch.cat(keep)), self.subset(torch.cat(out))
        train.skipped, train.skipped_files = self.skipped, self.skipped_files
        return train, held

    def counts(self) -> dict[str, int]:
        """Images per domain."""
        return {d: int((self.labels == i).sum()) for i, d in enumerate(self.domains)}


MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # larger images are refused before decoding (decompression bombs)


def open_image(path):
    """``PIL.Image.open(path)`` with its header checked: a decompression bomb is a one-line DataError.

    PIL itself raises ``DecompressionBombError`` (not an ``OSError``) from ``open`` for headers over
    twice its own limit; smaller claims over ``MAX_IMAGE_PIXELS`` are refused by :func:`check_image_size`.
    """
    from PIL import Image

    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refused, {str(exc).split(',')[0]}") from None
    check_image_size(img, path)
    return img


def check_image_size(img, path) -> None:
    """Refuse (DataError) an opened-but-not-decoded image whose header claims > MAX_IMAGE_PIXELS."""
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: image of {w}x{h} pixels is larger than the limit of {MAX_IMAGE_PIXELS} pixels; refused")


def to_8bit_rgb(img):
    """RGB uint8 view of any PIL mode; 16-bit grey ("I;16*", "I") is scaled by 255/65535, not clipped at 255."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode == "I":
        a = np.asarray(img).astype(np.float64)  # (H, W), 0..65535
        a8 = np.clip(np.round(a * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(a8, mode="L").convert("RGB")
    return img.convert("RGB")


def to_square_array(img, size: int) -> np.ndarray:
    """PIL image → centre square crop → RGB → bicubic resize → uint8 (3, size, size).

    16-bit greyscale is scaled to 8 bits (a 16-bit PNG of mean 32768 gives mean ≈ 128).
    """
    from PIL import Image

    img = to_8bit_rgb(img)
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()  # (3, S, S)


def _read_image(path: Path, size: int) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            check_image_size(im, path)
            im.load()
            return to_square_array(im, size)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, DataError, Image.DecompressionBombError):
        return None  # counted as skipped by the caller


DATA_COPIES = 9  # uint8 images: read, stacked, reordered, made contiguous, channel-first, and float statistics (4)


def check_data_size(n: int, img_size: int, where) -> int:
    """The bytes ``n`` images of side ``img_size`` take in memory (with their copies while a data set is built),
    checked against the memory budget (:mod:`branchspec.budget`) before any is read."""
    return budget.check(budget.BASELINE_BYTES + n * 3 * img_size * img_size * DATA_COPIES,
                        f"`img_size` {img_size} with the {n} images of {where}")


def _listing(folder: Path) -> list[Path]:
    """The entries of ``folder``; an unreadable one (no permission, an I/O error) is a one-line DataError."""
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise DataError(f"cannot read the folder {folder}: {exc.strerror or exc}") from None


def load_image_folders(root: str | os.PathLike, img_size: int, split: str = "train", progress: bool = True) -> DomainImages:
    """Read ``ROOT/<split>/<domain>/*.jpg|*.png`` (AFHQ / CelebA-HQ layout), resized to ``img_size``.

    Domains are the sub-folders in sorted order. Unreadable files are skipped
    and counted; a missing split folder, no domain, or a domain without any
    readable image raises a one-line :class:`BranchspecError`.
    """
    root = Path(root)
    base = root / split
    if not base.is_dir():
        raise DataError(f"{root}: no '{split}/' folder (expected {root}/{split}/<domain>/*.jpg|*.png)")
    domains = sorted(p.name for p in _listing(base) if p.is_dir() and not p.name.startswith("."))
    if not domains:
        raise DataError(f"{base}: no domain sub-folders (expected {base}/<domain>/*.jpg|*.png)")
    files = []
    for i, d in enumerate(domains):
        fs = sorted(p for p in _listing(base / d) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not fs:
            raise DataError(f"domain '{d}' is empty: no .jpg/.png images in {base / d}")
        files += [(f, i) for f in fs]
    check_data_size(len(files), img_size, base)
    images, labels, skipped, read = [], [], [], []
    it = files
    if progress:
        from tqdm import tqdm

        it = tqdm(files, desc=f"reading {root.name}", unit="img", leave=False)
    for path, label in it:
        arr = _read_image(path, img_size)
        if arr is None:
            skipped.append(str(path))
            continue
        images.append(arr)
        labels.append(label)
        read.append(str(path))
    labels_t = torch.tensor(labels, dtype=torch.int64)
    for i, d in enumerate(domains):
        if not (labels_t == i).any():
            raise DataError(f"domain '{d}' is empty: none of its {sum(1 for _, l in files if l == i)} images could be read")
    return DomainImages(
        torch.from_numpy(np.stack(images)), labels_t, domains, f"folders:{root}", len(skipped), skipped, read
    )


def cifar_domains(root: str | os.PathLike, train: bool = True, classes: list[str] | None = None) -> DomainImages:
    """CIFAR-10 (python format) with its classes as domains, 32×32.

    ``classes`` keeps only those class names (e.g. ``["cat", "dog"]``),
    relabelled 0..len−1 in the given order.
    """
    from branchspec.data.cifar import load_cifar10  # written by the classifier part; imported lazily

    x, y, names = load_cifar10(root, train=train)  # (N, 32, 32, 3) uint8, (N,) int64
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # (N, 3, 32, 32)
    labels = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    names = list(names)
    if classes:
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise DataError(f"unknown CIFAR-10 class(es) {unknown}; known: {names}")
        twice = next((c for i, c in enumerate(classes) if c in classes[:i]), None)
        if twice is not None:
            raise DataError(f"domain '{twice}' is named twice (each class may be one domain only)")
        keep = torch.zeros_like(labels, dtype=torch.bool)
        new = torch.full_like(labels, -1)
        for j, c in enumerate(classes):
            m = labels == names.index(c)
            keep |= m
            new[m] = j
        images, labels, names = images[keep], new[keep], list(classes)
        if not len(labels):
            raise DataError(f"CIFAR-10 folder {root}: no images of the class(es) {', '.join(classes)}")
    return DomainImages(images, labels, names, f"cifar10:{root}")
