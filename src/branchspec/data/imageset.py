"""An in-memory labelled image set with batched, reproducible augmentation.

CIFAR-10 (:mod:`branchspec.data.cifar`) and the embedded digits
(:mod:`branchspec.data.digits`) both become an :class:`ImageSet`: uint8
images ``(N, 3, H, W)`` plus labels. Batches are augmented as whole tensors
with torch ops — random crop with 4-pixel zero padding and horizontal flip,
then per-channel normalisation (the standard CIFAR recipe of ref. [15]) —
so augmentation is a few vectorised kernels per batch rather than a Python
loop per image. Batch ``i`` of epoch ``e`` is a pure function of
``(seed, e, i)`` (its own ``torch.Generator``), which makes ``--resume``
exact without saving any data-loader state, and lets :meth:`ImageSet.batches`
prepare the next batch in a background thread while the current one trains
(torch kernels release the GIL, so both cores stay busy).

Example:
    >>> import numpy as np
    >>> s = ImageSet(np.zeros((10, 8, 8, 3), np.uint8), np.arange(10) % 2, ["a", "b"])
    >>> x, y = next(iter(s.batches(4, epoch=0, seed=0, augment=True)))
    >>> tuple(x.shape), tuple(y.shape)
    ((4, 3, 8, 8), (4,))
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from branchspec.errors import DataError
from branchspec.seeds import derive_seed


def translate(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random-crop translation of a batch ``(B, C, H, W)``: zero-pad by ``pad`` and crop
    back at a random offset in [0, 2·pad]² per image (the standard CIFAR crop)."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)  # (B,)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(c)[None, :, None, None]
    return xp[bi, ci, rows, cols]  # (B, C, H, W)


def flip_where(x: Tensor, mask: Tensor) -> Tensor:
    """Horizontally flip the images of ``x (B, C, H, W)`` where ``mask (B,)`` is True."""
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def random_crop_flip(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of a whole batch ``(B, C, H, W)``:
    :func:`translate`, then a fair coin per image from the same generator for :func:`flip_where`."""
    x = translate(x, gen, pad)
    return flip_where(x, torch.rand(x.shape[0], generator=gen) < 0.5)  # (B, C, H, W)


def _batch_seed(seed: int, epoch: int, index: int) -> int:
    return derive_seed(seed, "batch", epoch, index)


@dataclass
class ImageSet:
    """Labelled uint8 images ``(N, H, W, 3)`` in memory, served as normalised float batches.

    ``mean`` / ``std`` (per channel, in [0, 1] units) default to the statistics
    of these images; pass the training set's to normalise a test set alike.
    """

    images_hwc: np.ndarray
    labels_np: np.ndarray
    class_names: list
    mean: tuple | None = None
    std: tuple | None = None
    skipped: int = 0  # unreadable image files left out when the set was read (image folders)

    def __post_init__(self) -> None:
        if self.images_hwc.ndim != 4 or self.images_hwc.shape[3] != 3 or self.images_hwc.dtype != np.uint8:
            raise DataError(f"images must be uint8 (N, H, W, 3), got {self.images_hwc.dtype} {self.images_hwc.shape}")
        if len(self.labels_np) != len(self.images_hwc):
            raise DataError(f"{len(self.images_hwc)} images but {len(self.labels_np)} labels")
        self.images = torch.from_numpy(np.ascontiguousarray(self.images_hwc.transpose(0, 3, 1, 2)))  # (N, 3, H, W) uint8
        self.labels = torch.as_tensor(np.asarray(self.labels_np), dtype=torch.int64)  # (N,)
        if self.mean is None or self.std is None:
            f = self.images.float().div_(255.0)
            self.mean = tuple(float(v) for v in f.mean(dim=(0, 2, 3)))
            self.std = tuple(max(float(v), 1e-3) for v in f.std(dim=(0, 2, 3)))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, n: int) -> "ImageSet":
        """The first ``n`` images (statistics recomputed on them)."""
        return ImageSet(self.images_hwc[:n], self.labels_np[:n], self.class_names)

    def normalize(self, x_uint8: Tensor) -> Tensor:
        """uint8 ``(B, 3, H, W)`` -> float, per channel (x/255 − mean)/std."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x_uint8.float() / 255.0 - mean) / std

    def make_batch(self, idx: Tensor, augment: bool, gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        x = self.images[idx]  # (B, 3, H, W) uint8
        if augment:
            x = random_crop_flip(x, gen)
        return self.normalize(x), self.labels[idx]

    def order(self, epoch: int, seed: int, shuffle: bool) -> Tensor:
        """The sample order of ``epoch``: a permutation seeded by (seed, epoch), or 0..N−1."""
        if not shuffle:
            return torch.arange(len(self))
        gen = torch.Generator().manual_seed(_batch_seed(seed, epoch, -1))
        return torch.randperm(len(self), generator=gen)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(
        self,
        batch_size: int,
        epoch: int = 0,
        seed: int = 0,
        augment: bool = False,
        shuffle: bool | None = None,
        start: int = 0,
        drop_last: bool = False,
        prefetch: bool = True,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x (B, 3, H, W) float, y (B,) int64)`` batches ``start, start+1, …`` of ``epoch``.

        ``shuffle`` defaults to ``augment``. With ``prefetch`` the next batch is
        built in a worker thread while the caller uses the current one.
        """
        shuffle = augment if shuffle is None else shuffle
        order = self.order(epoch, seed, shuffle)
        nb = self.num_batches(batch_size, drop_last)

        def build(i: int):
            gen = torch.Generator().manual_seed(_batch_seed(seed, epoch, i)) if augment else None
            return self.make_batch(order[i * batch_size:(i + 1) * batch_size], augment, gen)

        if not prefetch:
            for i in range(start, nb):
                yield build(i)
            return
        yield from prefetched(build, start, nb)


def is_image_folder(data: str) -> bool:
    """True if ``data`` is an image-folder root ``ROOT/train/<class>/`` (AFHQ / ImageFolder layout)."""
    from pathlib import Path

    root = Path(data)
    return (root / "train").is_dir() and not (root / "data_batch_1").exists()


def folder_split(root: str, train: bool, img_size: int, progress: bool = False) -> ImageSet:
    """``ROOT/train/<class>/*`` (``train``) or ``ROOT/val/<class>/*`` (else ``ROOT/test/``) as an ImageSet.

    Classes are the sub-folders in sorted order; images are centre-cropped and
    resized to ``img_size``; unreadable files are skipped and counted
    (``ImageSet.skipped``). The images are put in a fixed shuffled order, so
    ``--subset N`` takes N images of every class in proportion, not the first class.
    """
    from pathlib import Path

    from branchspec.data.folders import load_image_folders

    split = "train" if train else next((s for s in ("val", "test") if (Path(root) / s).is_dir()), "val")
    d = load_image_folders(root, img_size, split, progress)
    order = np.random.default_rng(derive_seed(0, "image-folder-order")).permutation(len(d))
    images = d.images.numpy()[order].transpose(0, 2, 3, 1)  # (N, S, S, 3) uint8
    return ImageSet(np.ascontiguousarray(images), d.labels.numpy()[order], list(d.domains), skipped=d.skipped)


def load_source(data: str, train: bool = True, img_size: int = 32) -> ImageSet:
    """``"digits"`` (embedded, :mod:`branchspec.data.digits`), a CIFAR-10 python-format folder, or an
    image-folder root ``ROOT/{train,val}/<class>/`` read at ``img_size`` (:func:`folder_split`)."""
    if data == "digits":
        from branchspec.data.digits import load_digits_images

        return ImageSet(*load_digits_images(train))
    if is_image_folder(data):
        return folder_split(data, train, img_size)
    from branchspec.data.cifar import load_cifar10

    return ImageSet(*load_cifar10(data, train))


def split_for(state: dict, data: str, train: bool) -> ImageSet:
    """The training (``train=True``) or test split of ``data`` normalised with the training statistics a
    classifier checkpoint recorded (``state["data"]["mean" / "std"]``, and ``img_size`` for image folders);
    without them, with the split's own."""
    d = state.get("data", {}) if isinstance(state.get("data"), dict) else {}
    size = d.get("img_size", 32)
    split = load_source(data, train=train, img_size=size if isinstance(size, int) and not isinstance(size, bool) else 32)
    return ImageSet(split.images_hwc, split.labels_np, split.class_names, d.get("mean"), d.get("std"))


def test_set_for(state: dict, data: str) -> ImageSet:
    """The test split of ``data`` as a checkpoint's model sees it (:func:`split_for`)."""
    return split_for(state, data, train=False)


def prefetched(build, start: int, stop: int):
    """``build(i)`` for i in [start, stop), each batch built on a worker thread while the previous one is used."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(build, start) if start < stop else None
        for i in range(start, stop):
            cur = nxt.result()
            nxt = pool.submit(build, i + 1) if i + 1 < stop else None
            yield cur
