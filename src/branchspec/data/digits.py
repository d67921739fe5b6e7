"""The embedded stand-in for CIFAR-10: scikit-learn's bundled 8×8 digits.

1797 real handwritten digits (10 classes) ship with scikit-learn, so the demo
and the tests need no network. They are upsampled (bilinear) to 32×32,
repeated to 3 channels and scaled to uint8, giving arrays in exactly the
layout :func:`branchspec.data.cifar.load_cifar10` returns — the same
:class:`~branchspec.data.imageset.ImageSet` code path serves both.

Example:
    >>> x, y, names = load_digits_images(train=False)
    >>> x.shape[1:], x.dtype.name, names[:3]
    ((32, 32, 3), 'uint8', ['0', '1', '2'])
"""

from __future__ import annotations

import functools

import numpy as np
import torch

TEST_FRACTION = 0.2  # last 20 % of a fixed permutation is the test split
SPLIT_SEED = 0


def load_digits_images(train: bool = True, size: int = 32) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images uint8 (N, size, size, 3), labels int64 (N,), class_names)`` of the digits split."""
    x, y, names = _cached(train, size)
    return x.copy(), y.copy(), list(names)


@functools.lru_cache(maxsize=4)
def _cached(train: bool, size: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8) in [0, 1]
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)  # (N, 3, size, size)
    images = x.permute(0, 2, 3, 1).contiguous().numpy()  # (N, size, size, 3)
    labels = d.target.astype(np.int64)
    perm = np.random.RandomState(SPLIT_SEED).permutation(len(labels))
    n_test = int(round(TEST_FRACTION * len(labels)))
    idx = perm[n_test:] if train else perm[:n_test]
    return images[idx], labels[idx], [str(i) for i in range(10)]
