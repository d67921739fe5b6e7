"""The shipped §6 models ``checkpoints/cifar10-m16/last`` (AdamW), ``checkpoints/cifar10-m16-sgd/last``
(kuangliu's SGD recipe) and ``cifar10-m16-sgd-wd`` / ``cifar10-m32-sgd-wd`` (that recipe with the full set's
weight-decay budget): load without ../shared, reproduce their accuracy with it.

The default test checks the file itself (weights only, the model spec, loads
through :func:`branchspec.loading.load_model`, finite outputs). The
``shared_data`` test evaluates it on the 1,000 images of ``../shared``'s
``test_batch`` and must reproduce the test accuracy recorded in the shipped
``metrics.csv`` (the same images, eval mode, no augmentation) to the image.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from branchspec.branched import as_branched
from branchspec.loading import load_model
from branchspec.checkpoint import checkpoint_paths, checkpoint_state

ROOT = Path(__file__).resolve().parents[1]
SHIP = ROOT / "checkpoints" / "cifar10-m16"
SGD = ROOT / "checkpoints" / "cifar10-m16-sgd"
SGD_WD = ROOT / "checkpoints" / "cifar10-m16-sgd-wd"
SGD_WD32 = ROOT / "checkpoints" / "cifar10-m32-sgd-wd"
SHIPS = pytest.mark.parametrize("ship", [SHIP, SGD, SGD_WD, SGD_WD32], ids=lambda p: p.name)
# the matched-budget models' turned-off branches: every weight before the last layer decayed away
TURNED_OFF = {SGD_WD: [2, 3, 6, 15], SGD_WD32: [0, 1, 2, 3, 5, 6, 7, 8, 10, 14, 16, 18, 19, 21, 22, 24, 27, 29]}
CIFAR = Path(os.environ.get("BRANCHSPEC_SHARED_DATA", ROOT.parent / "shared" / "data")) / "cifar-10-batches-py"


def _recorded_accuracy(ship: Path = SHIP) -> float:
    """The accuracy of the shipped weights as the training run measured it (last row of metrics.csv)."""
    with (ship / "metrics.csv").open(newline="") as fh:
        last = list(csv.DictReader(fh))[-1]
    state = checkpoint_state(ship / "last")
    key = "ema_test_acc" if state.get("ema_decay") else "test_acc"  # RUN/ema exported, or RUN/last
    return float(last[key])


def test_shipped_checkpoint_loads_without_data():
    weights, _ = checkpoint_paths(SHIP / "last")
    assert weights.stat().st_size < 8e6  # weights only (≈ 5 MB), no optimiser state
    state = checkpoint_state(SHIP / "last")
    assert state["weights_only"] is True and state["model"]["kind"] == "classifier"
    cfg = json.loads((SHIP / "config.json").read_text())
    assert cfg["num_branches"] == 16 and cfg["clamp"] is True and cfg["train_images"] == 50000
    model, _ = load_model(SHIP / "last")
    assert model.num_branches == 16
    f, v = model(torch.randn(2, 3, 32, 32), return_branches=True)
    assert f.shape == (2, 10) and v.shape == (16, 2, 10) and torch.isfinite(v).all()


def test_shipped_sgd_checkpoint_is_the_kuangliu_recipe_run():
    """The SGD model: weights only, trained to the end of the recipe's 200-epoch schedule on its 2,500 images."""
    weights, _ = checkpoint_paths(SGD / "last")
    assert weights.stat().st_size < 8e6
    state = checkpoint_state(SGD / "last")
    assert state["weights_only"] is True and state["model"]["kind"] == "classifier"
    cfg = json.loads((SGD / "config.json").read_text())
    assert (cfg["optimizer"], cfg["lr"], cfg["weight_decay"], cfg["schedule"]) == ("sgd", 0.1, 5e-4, "cosine")
    assert cfg["train_images"] == 2500 and cfg["departures"] == ["clamp_grad"]
    with (SGD / "metrics.csv").open(newline="") as fh:
        assert int(list(csv.DictReader(fh))[-1]["epoch"]) == cfg["epochs"] == 200
    model, _ = load_model(SGD / "last")
    v = model(torch.randn(2, 3, 32, 32), return_branches=True)[1]
    assert v.shape == (16, 2, 10) and torch.isfinite(v).all()


@pytest.mark.parametrize("ship", list(TURNED_OFF), ids=lambda p: p.name)
def test_shipped_full_decay_budget_models_have_branches_turned_off(ship):
    """The SGD models with weight decay 1e-2 (the decay budget of 50,000 images), M = 16 and 32: in 4 of 16 and
    18 of 32 branches every weight before the last layer decayed away, so each outputs one constant vector
    whatever the image; every other branch kept its convolutions (Fig. 17's shape: 12 and 14 stay on)."""
    cfg = json.loads((ship / "config.json").read_text())
    assert (cfg["optimizer"], cfg["lr"], cfg["weight_decay"], cfg["train_images"]) == ("sgd", 0.1, 1e-2, 2500)
    weights, _ = checkpoint_paths(ship / "last")
    assert weights.stat().st_size < 12e6 and checkpoint_state(ship / "last")["weights_only"] is True
    model, _ = load_model(ship / "last")
    m = model.num_branches
    with torch.no_grad():
        conv = [float(torch.sqrt(sum((p.float() ** 2).sum() for n, p in b.named_parameters()
                                     if ".conv" in n or n.startswith("stem.0") or "shortcut.0" in n)))
                for b in as_branched(model).branches]
    off = [k for k in range(m) if conv[k] < 1e-2]
    assert m == cfg["num_branches"] and off == TURNED_OFF[ship]
    assert min(c for k, c in enumerate(conv) if k not in off) > 0.1
    model.eval()
    with torch.no_grad():
        v = model(torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0)), return_branches=True)[1]
    spread = v.std(dim=1).amax(dim=1)  # (M,) how much each branch's output varies over the images
    assert all(spread[k] < 1e-6 * spread.max() for k in off) and v[off].abs().amax() > 0  # a constant: the bias
    # and one and the same constant in every turned-off branch: each last-layer bias gets the gradient ∂L/∂f
    assert (v[off] - v[off[0]]).abs().amax() < 1e-4 * v[off[0]].abs().amax()


@pytest.mark.shared_data
@SHIPS
def test_shipped_checkpoint_reproduces_its_test_accuracy(ship):
    if not CIFAR.is_dir():
        pytest.skip(f"no CIFAR-10 folder at {CIFAR}")
    from branchspec.data.imageset import test_set_for
    from branchspec.classifier.evaluate import evaluate

    model, state = load_model(ship / "last")
    test = test_set_for(state, str(CIFAR))
    assert len(test) == 1000
    res = evaluate(model, test, clamp=True)  # fp32 on this CPU
    cfg = json.loads((ship / "config.json").read_text())
    # A run trained and evaluated elsewhere (CUDA, bf16 autocast) may differ by a few of the 1,000 images in fp32 on
    # a CPU; one trained here in fp32 must match exactly.
    tol = 0 if (cfg["device"], cfg["precision"]) == ("cpu", "fp32") else 3
    assert abs(round(res["test_acc"] * 1000) - round(_recorded_accuracy(ship) * 1000)) <= tol


def _analysis(ship: Path = SHIP) -> tuple[dict, Path]:
    """The shipped analysis.json and the path of its arrays (shipped.json's "analysis" and "arrays")."""
    doc = json.loads((ship / "shipped.json").read_text())
    return json.loads((ship / doc["analysis"]).read_text()), ship / doc["arrays"]


@SHIPS
def test_shipped_analysis_npz_agrees_with_its_json(ship):
    """The committed arrays the shipped analysis figures are drawn from (``draw_analysis``) have the shapes of its
    analysis.json and give back its numbers: class means and covariance from the branch outputs, the labels of the
    Fig. 7 samples, one image per gallery entry shown, Hessians of the first layer's size with its largest entry."""
    import numpy as np

    from branchspec.budget import npz_arrays
    from branchspec.compact import load_expanded

    res, path = _analysis(ship)
    m, n, k = res["num_branches"], res["num_test"], len(res["class_names"])
    assert m == json.loads((ship / "config.json").read_text())["num_branches"] and (n, k) == (1000, 10)
    # small enough for git: the Hessians are packed (branchspec.compact); M = 32's two 4,320² take 7.0 MB
    assert path.stat().st_size < {16: 6e6, 32: 8e6}[m]
    assert npz_arrays(path)["outputs"] == ((m, n, k), "<f4")  # read from the header, before loading
    a = load_expanded(path)
    v, labels = a["outputs"].astype(np.float64), a["labels"]  # (M, N, C), (N,)
    cs = res["confidence_samples"]
    assert labels.shape == (n,) and labels[cs["indices"]].tolist() == cs["labels"]
    means = np.stack([v[:, labels == c].mean(axis=1) for c in range(k)], axis=1)  # (M, K, C)
    np.testing.assert_allclose(means, res["class_means"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.einsum("mnc,lnc->ml", v, v), res["covariance"], rtol=1e-4, atol=1e-3)  # F Fᵀ
    for i, pair in enumerate(res["galleries"]["pairs"]):
        g = a[f"gallery_{i}"]
        assert g.dtype == np.uint8 and g.shape == (len(pair["shown"]), 32, 32, 3)
    for tag in ("init", "trained"):
        h, saved = a[f"hessian_{tag}"], res["hessian"][tag]
        size = saved["boundaries"][-1]
        assert h.shape == (size, size) == (135 * m, 135 * m) and (h == h.T).all()  # 3·3·3·5 stem weights a branch
        assert float(np.abs(h).max()) == pytest.approx(saved["summary"]["max_abs_entry"], rel=1e-5)


@pytest.mark.shared_data
@SHIPS
def test_shipped_gallery_images_are_the_test_images_shown(ship):
    if not CIFAR.is_dir():
        pytest.skip(f"no CIFAR-10 folder at {CIFAR}")
    import numpy as np

    from branchspec.budget import load_npz
    from branchspec.data.imageset import test_set_for

    res, path = _analysis(ship)
    _, state = load_model(ship / "last")
    test = test_set_for(state, str(CIFAR))
    a = load_npz(path, keys=lambda name: name.startswith(("gallery_", "labels")))
    np.testing.assert_array_equal(a["labels"], test.labels_np)
    for i, pair in enumerate(res["galleries"]["pairs"]):
        np.testing.assert_array_equal(a[f"gallery_{i}"], test.images_hwc[pair["shown"]])


def test_every_shipped_figure_command_imports_what_exists():
    """The `python -c "from branchspec… import …"` commands in shipped.json name functions that exist (a module
    split once left them pointing at the old module)."""
    import importlib
    import re

    found = 0
    for shipped in sorted((ROOT / "checkpoints").glob("*/shipped.json")):
        for module, names in re.findall(r"from (branchspec[\w.]*) import ([\w, ]+?)(?: as \w+)?;", shipped.read_text()):
            mod = importlib.import_module(module)
            for name in (n.strip() for n in names.split(",")):
                assert hasattr(mod, name), f"{shipped}: {module} has no {name}"
                found += 1
    assert found >= 4  # the classifier ships' redraw commands
