"""Classifier model, losses and CIFAR-10 / digits data (paper §6)."""

import os
import pickle

import numpy as np
import pytest
import torch

from branchspec.data.cifar import load_cifar10, restricted_loads, write_batch
from branchspec.data.digits import load_digits_images
from branchspec.data.imageset import ImageSet, load_source, random_crop_flip
from branchspec.errors import BranchspecError
from branchspec.models.registry import build_model
from branchspec.models.resnet import ClassifierConfig, SlimResNet18, build_classifier, stage_widths
from branchspec.losses import classifier_loss, loss_value, soft_targets

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_branch_parameter_count_is_0_08M_and_M16_about_1_3M():
    model = build_classifier(ClassifierConfig())
    per = model.parameters_per_branch()
    assert len(per) == 16 and len(set(per)) == 1
    assert abs(per[0] - 80_000) <= 8_000
    assert abs(sum(per) - 1.3e6) <= 0.1e6


def test_full_width_is_resnet18():
    # the layout is the CIFAR ResNet18 of ref. [15]: 11.17 M parameters at width 64
    assert stage_widths(64) == [64, 128, 256, 512]
    assert sum(p.numel() for p in SlimResNet18(64).parameters()) == 11_173_962


def test_shapes_and_strides():
    model = build_classifier(ClassifierConfig(num_branches=3, width=2, seed=0, engine="loop"))
    x = torch.randn(5, 3, 32, 32)
    f, v = model(x, return_branches=True)
    assert f.shape == (5, 10) and v.shape == (3, 5, 10)
    torch.testing.assert_close(f, v.sum(0))
    branch = model.branches[0]
    h = branch.stem(x)
    sizes = []
    for stage in branch.layers:
        h = stage(h)
        sizes.append(tuple(h.shape[1:]))
    assert sizes == [(2, 32, 32), (4, 16, 16), (8, 8, 8), (16, 4, 4)]
    assert len(branch.layers) == 4 and all(len(s) == 2 for s in branch.layers)


def test_registry_builds_classifier_and_config_validates():
    m = build_model("classifier", {"num_branches": 2, "width": 2, "num_classes": 10})
    assert m.num_branches == 2
    with pytest.raises(ValueError):
        ClassifierConfig(num_branches=0)
    with pytest.raises(ValueError):
        ClassifierConfig(engine="gpu")


def _explicit_soft_ce(f, y):
    total = 0.0
    for i in range(f.shape[0]):
        s = torch.tensor([1.0 if c == y[i] else -1.0 for c in range(f.shape[1])])
        p = torch.exp(s) / torch.exp(s).sum()
        fc = torch.tensor([min(1.0, max(-1.0, float(v))) for v in f[i]])
        q = torch.exp(fc) / torch.exp(fc).sum()
        total += -(p * torch.log(q)).sum()
    return total / f.shape[0]


def test_clamped_loss_matches_explicit_formula_and_gradient_is_p_minus_s():
    f = torch.randn(6, 10) * 2
    y = torch.randint(0, 10, (6,))
    loss, logs = classifier_loss(f, y, clamp=True)
    torch.testing.assert_close(loss, _explicit_soft_ce(f, y))
    assert set(logs) == {"loss", "acc"}
    # eq. 3: inside the clamp range d(sum loss)/df = s(f) - p
    g = (torch.rand(4, 10) - 0.5).requires_grad_(True)
    yy = torch.randint(0, 10, (4,))
    (classifier_loss(g, yy, clamp=True)[0] * 4).backward()
    torch.testing.assert_close(g.grad, g.detach().softmax(1) - soft_targets(yy, 10))
    # minimum: f equal to the ±1 vector gives the entropy of p
    s = 2 * torch.nn.functional.one_hot(yy, 10).float() - 1
    p = soft_targets(yy, 10)
    torch.testing.assert_close(classifier_loss(s, yy, clamp=True)[0], -(p * p.log()).sum(1).mean())


def test_no_clamp_loss_is_unclamped_cross_entropy():
    f = torch.tensor([[10.0, 0.0]])
    loss, _ = classifier_loss(f, torch.tensor([1]), clamp=False)
    assert loss.item() == pytest.approx(10.0, abs=1e-3)


# ---------------------------------------------------------------- CIFAR format
def _tiny_cifar(root, n_train=6, n_test=4, seed=0):
    rng = np.random.RandomState(seed)
    root.mkdir(exist_ok=True)
    truth = {}
    for i in range(1, 6):
        x = rng.randint(0, 256, (n_train, 32, 32, 3)).astype(np.uint8)
        y = rng.randint(0, 10, n_train)
        write_batch(root / f"data_batch_{i}", x, y)
        truth[i] = (x, y)
    x = rng.randint(0, 256, (n_test, 32, 32, 3)).astype(np.uint8)
    y = rng.randint(0, 10, n_test)
    write_batch(root / "test_batch", x, y)
    truth["test"] = (x, y)
    write_batch(root / "batches.meta", None, None, meta_names=NAMES)
    return truth


def test_loader_reads_generated_batches_in_the_real_format(tmp_path):
    truth = _tiny_cifar(tmp_path / "c")
    # the generated files are what the real ones are: protocol-2 pickles with bytes keys
    raw = pickle.loads((tmp_path / "c" / "data_batch_1").read_bytes(), encoding="bytes")
    assert set(raw) >= {b"data", b"labels"} and raw[b"data"].shape == (6, 3072)
    # row layout: 1024 red, then green, then blue, row-major
    assert raw[b"data"][0, 1024 + 33] == truth[1][0][0, 1, 1, 1]
    x, y, names = load_cifar10(tmp_path / "c", train=True)
    assert x.shape == (30, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[6:12], truth[2][0])
    np.testing.assert_array_equal(y[:6], truth[1][1])
    xt, yt, _ = load_cifar10(tmp_path / "c", train=False)
    np.testing.assert_array_equal(xt, truth["test"][0])
    assert names == NAMES
    s = load_source(str(tmp_path / "c"), train=True)
    assert isinstance(s, ImageSet) and len(s) == 30


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_os(tmp_path):
    blob = pickle.dumps({"data": _Evil(), "labels": [0]}, protocol=2)
    with pytest.raises(BranchspecError) as e:
        restricted_loads(blob, "evil")
    msg = str(e.value)
    assert "\n" not in msg and "refusing" in msg and ("posix" in msg or "os" in msg)
    root = tmp_path / "c"
    _tiny_cifar(root)
    (root / "data_batch_3").write_bytes(blob)
    with pytest.raises(BranchspecError, match="refusing"):
        load_cifar10(root)


def test_wrong_or_truncated_folder_is_one_line_error(tmp_path):
    with pytest.raises(BranchspecError, match="not found"):
        load_cifar10(tmp_path / "nope")
    root = tmp_path / "c"
    _tiny_cifar(root)
    (root / "data_batch_4").unlink()
    with pytest.raises(BranchspecError, match="missing data_batch_4"):
        load_cifar10(root)
    _tiny_cifar(root)
    blob = (root / "data_batch_2").read_bytes()
    (root / "data_batch_2").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BranchspecError, match="truncated") as e:
        load_cifar10(root)
    assert "\n" not in str(e.value)


def test_digits_share_the_cifar_layout():
    x, y, names = load_digits_images(train=True)
    xt, yt, _ = load_digits_images(train=False)
    assert x.shape[1:] == (32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert len(x) + len(xt) == 1797 and names == [str(i) for i in range(10)]
    assert (x[..., 0] == x[..., 2]).all() and x.max() == 255


def test_crop_flip_matches_explicit_per_image_loop():
    x = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 9, (6,), generator=g)
    ox = torch.randint(0, 9, (6,), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    for i in range(6):
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        crop = padded[:, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8]
        if flip[i]:
            crop = crop.flip(-1)
        assert torch.equal(out[i], crop)


def test_batches_are_reproducible_and_cover_the_epoch():
    s = ImageSet(np.random.RandomState(0).randint(0, 256, (50, 8, 8, 3)).astype(np.uint8), np.arange(50) % 10, NAMES)
    a = list(s.batches(16, epoch=1, seed=2, augment=True))
    b = list(s.batches(16, epoch=1, seed=2, augment=True, prefetch=False))
    c = list(s.batches(16, epoch=1, seed=2, augment=True, start=2))
    assert len(a) == 4 and sum(len(y) for _, y in a) == 50
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    assert torch.equal(a[2][0], c[0][0])
    assert sorted(torch.cat([y for _, y in list(s.batches(16, epoch=3, seed=2, augment=True))]).tolist()) == sorted(s.labels.tolist())
    x, _ = next(iter(s.batches(50, augment=False)))
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("clamp", [True, False])
def test_one_loss_for_training_and_hessian(clamp):
    """The Hessian's summed loss is the training loss × batch size, for clamped and --no-clamp runs."""
    from branchspec.experiments.hessian_data import classifier_data
    f = torch.randn(6, 10) * 2
    y = torch.arange(6) % 10
    mean, _ = classifier_loss(f, y, clamp)
    total, _ = classifier_loss(f, y, clamp, reduction="sum")
    torch.testing.assert_close(total, mean * 6)
    torch.testing.assert_close(loss_value(f, y, clamp, reduction="sum"), total)
    torch.testing.assert_close(loss_value(f.double(), y, clamp, reduction="sum"), total.double())  # f64 kept (Hessians)
    assert loss_value(f.double(), y, clamp, reduction="sum").dtype == torch.float64
    state = {"model": {"kind": "classifier", "config": {"clamp": clamp}}}
    data = classifier_data(None, state, 4)
    torch.testing.assert_close(data.loss_fn(f[:4], y[:4]), classifier_loss(f[:4], y[:4], clamp, reduction="sum")[0])
    assert ("clamp(f" in data.loss) == clamp
