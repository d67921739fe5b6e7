"""train-classifier on image folders: ROOT/train/<class>/, ROOT/val/<class>/, corrupt files counted, one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from branchspec.cli import main
from branchspec.data.imageset import folder_split, is_image_folder, load_source
from branchspec.checkpoint import checkpoint_state


def _folder(root, split, counts, size=20, seed=0):
    rng = np.random.default_rng(seed)
    for c, (name, n) in enumerate(counts.items()):
        d = root / split / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = np.full((size, size + 6, 3), 40 + 150 * c, np.uint8)  # class = brightness; not square: centre crop
            a = np.clip(a + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(d / f"{i}.png")


@pytest.fixture()
def root(tmp_path):
    _folder(tmp_path, "train", {"cat": 12, "dog": 10})
    _folder(tmp_path, "val", {"cat": 4, "dog": 4}, seed=1)
    (tmp_path / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    return tmp_path


def test_folder_split_reads_resizes_and_counts_corrupt(root):
    assert is_image_folder(str(root))
    tr = folder_split(str(root), True, 16)
    assert tr.images_hwc.shape == (22, 16, 16, 3) and tr.class_names == ["cat", "dog"]
    assert tr.skipped == 1
    assert sorted(np.bincount(tr.labels_np).tolist()) == [10, 12]
    # the label follows the image: dark = cat (0), bright = dog (1)
    bright = tr.images_hwc.reshape(22, -1).mean(1) > 110
    assert (bright == (tr.labels_np == 1)).all()
    assert set(tr.labels_np[:6].tolist()) == {0, 1}  # shuffled: a subset holds both classes
    va = load_source(str(root), train=False, img_size=16)
    assert len(va) == 8 and va.skipped == 0


def test_train_classifier_on_folders_records_size_and_skips(root, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train-classifier", "--data", str(root), "--img-size", "16", "--branches", "2", "--epochs", "1",
               "--batch-size", "8", "--engine", "loop", "--out", str(out)])
    assert rc == 0
    state = checkpoint_state(out / "last")
    assert state["data"]["img_size"] == 16 and state["data"]["skipped"] == 1
    assert state["data"]["class_names"] == ["cat", "dog"]
    assert json.loads((out / "config.json").read_text())["img_size"] == 16


@pytest.mark.parametrize("layout, match", [
    ("no-class", "no domain sub-folders"),
    ("empty-class", "empty"),
])
def test_folder_layout_errors_are_one_line(tmp_path, capsys, layout, match):
    (tmp_path / "train").mkdir()
    if layout == "empty-class":
        _folder(tmp_path, "train", {"cat": 2})
        (tmp_path / "train" / "dog").mkdir()
    rc = main(["train-classifier", "--data", str(tmp_path), "--img-size", "16", "--branches", "2", "--epochs", "1",
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_img_size_is_checked(tmp_path, capsys):
    rc = main(["train-classifier", "--data", "digits", "--img-size", "4", "--out", str(tmp_path / "r")])
    assert rc == 2 and "--img-size" in capsys.readouterr().err
