"""Image-folder, embedded and CIFAR data for the class-transfer GAN."""

import numpy as np
import pytest
import torch
from PIL import Image

from branchspec.data.embedded import embedded_domains, embedded_full_images
from branchspec.data.domains import load_domains
from branchspec.data.folders import load_image_folders
from branchspec.errors import BranchspecError




def _folders(root, counts, size=(20, 14)):
    rng = np.random.default_rng(0)
    for d, n in counts.items():
        (root / "train" / d).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "train" / d / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_folders_read_resize_and_skip_corrupt(tmp_path):
    root = _folders(tmp_path, {"cat": 3, "dog": 2})
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    (root / "train" / "dog" / "notes.txt").write_text("ignored: not an image suffix")
    data = load_image_folders(root, img_size=8, progress=False)
    assert data.images.shape == (5, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.domains == ["cat", "dog"] and data.counts() == {"cat": 3, "dog": 2}
    assert data.skipped == 1 and data.skipped_files[0].endswith("broken.jpg")
    x, y = data.batch(torch.tensor([0, 4]))
    assert x.min() >= -1 and x.max() <= 1 and y.tolist() == [0, 1]
    train, held = data.split_holdout(1)
    assert len(train) == 3 and held.labels.tolist() == [0, 1]
    assert [f.rsplit("/", 1)[1] for f in held.files] == ["2.jpg", "1.png"]  # last in file-name order
    assert torch.equal(held.images[1], data.images[4])
    with pytest.raises(BranchspecError, match="hold out 2"):
        data.split_holdout(2)


def test_folders_centre_crop_reference(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    arr = np.zeros((10, 30, 3), dtype=np.uint8)
    arr[:, 10:20] = 255  # the centre square is white
    Image.fromarray(arr).save(tmp_path / "train" / "a" / "x.png")
    data = load_image_folders(tmp_path, img_size=4, progress=False)
    assert (data.images == 255).all()


def test_folders_errors(tmp_path):
    with pytest.raises(BranchspecError, match="no 'train/' folder"):
        load_image_folders(tmp_path, 8, progress=False)
    (tmp_path / "train").mkdir()
    with pytest.raises(BranchspecError, match="no domain"):
        load_image_folders(tmp_path, 8, progress=False)
    _folders(tmp_path, {"cat": 1})
    (tmp_path / "train" / "dog").mkdir()
    with pytest.raises(BranchspecError, match="domain 'dog' is empty") as e:
        load_image_folders(tmp_path, 8, progress=False)
    assert "\n" not in str(e.value)
    (tmp_path / "train" / "dog" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(BranchspecError, match="domain 'dog' is empty: none of its 1"):
        load_image_folders(tmp_path, 8, progress=False)
    with pytest.raises(BranchspecError, match="no such folder"):
        load_domains(str(tmp_path / "missing"), 8)


def test_embedded_domains_are_real_and_reproducible():
    a = embedded_domains(16, n_per_domain=5, seed=3)
    b = embedded_domains(16, n_per_domain=5, seed=3)
    assert a.domains == ["cat", "other"] and a.counts() == {"cat": 5, "other": 5}
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, embedded_domains(16, n_per_domain=5, seed=4).images)
    assert a.images.float().std() > 20  # photographs, not flat images
    full = embedded_full_images(16)
    assert full.images.shape == (5, 3, 16, 16)


def test_cifar_adapter(tmp_path):
    cifar = pytest.importorskip("branchspec.data.cifar")
    if not hasattr(cifar, "write_batch"):
        pytest.skip("branchspec.data.cifar has no write_batch helper")
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        cifar.write_batch(tmp_path / name, imgs, [3, 5, 3, 5, 0, 1])
    cifar.write_batch(tmp_path / "batches.meta", None, None, meta_names=names)
    data = load_domains(f"{tmp_path}:cat,dog", 16)
    assert data.domains == ["cat", "dog"] and data.images.shape[1:] == (3, 16, 16)
    assert data.counts() == {"cat": 10, "dog": 10}
