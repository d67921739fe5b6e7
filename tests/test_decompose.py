"""Decomposition with a stand-in branched generator: identities, files, statistics, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from branchspec import metrics
from branchspec.apps.components import Decomposition, stretch
from branchspec.apps.decomp_stats import DecompositionStats, summarize
from branchspec.apps.decompose import decompose_batch, decompose_images, find_images, load_image
from branchspec.cli import main

from _standin_gen import make_checkpoint


def _write_images(root, n_per=2, size=20, domains=("cat", "dog")):
    rng = np.random.default_rng(0)
    for d in domains:
        (root / d).mkdir(parents=True, exist_ok=True)
        for i in range(n_per):
            a = (rng.random((size, size + 4, 3)) * 255).astype(np.uint8)
            Image.fromarray(a).save(root / d / f"{d}{i}.png")
    return root


@pytest.fixture()
def setup(tmp_path):
    ckpt = tmp_path / "ckpt" / "last"
    gen = make_checkpoint(ckpt)
    data = _write_images(tmp_path / "data")
    return gen, ckpt, data


def test_decompose_batch_sums_to_output(setup):
    gen, _, _ = setup
    x = torch.rand(2, 3, 12, 12) * 2 - 1
    y = torch.tensor([0, 1])
    f, v, r = decompose_batch(gen, x, y)
    assert v.shape == (3, 2, 3, 12, 12) and f.shape == r.shape == (2, 3, 12, 12)
    np.testing.assert_allclose(r + v.sum(0), f, atol=1e-5)
    # branch k alone, by an explicit loop, is component k
    for k, branch in enumerate(gen.branches):
        np.testing.assert_allclose(branch(x, y).detach().numpy(), v[k], atol=1e-6)


def test_decompose_images_files_and_identity(setup, tmp_path):
    gen, _, data = setup
    (data / "cat" / "broken.png").write_bytes(b"not a png at all")
    paths = find_images([data])
    res = decompose_images(gen, paths, tmp_path / "out", ["cat", "dog"], img_size=16, batch_size=3)
    assert len(res.npz) == 4 and len(res.skipped) == 1 and "broken.png" in res.skipped[0]
    for p in res.npz:
        d = Decomposition.load(p)
        assert d.components.shape == (3, 3, 16, 16) and d.R.shape == (3, 16, 16)
        assert d.reconstruction_error() < 1e-5  # R + Σ components = output (before clipping)
        assert d.domain == p.stem.rstrip("0123456789")  # own domain from the folder name
        folder = p.with_suffix("")
        for name in ["regen", "R", "input"] + [f"branch_{k}" for k in range(3)] + [f"added_{k}" for k in range(3)]:
            assert (folder / f"{name}.png").is_file(), name
    doc = json.loads((tmp_path / "out" / "decomposition.json").read_text())
    assert doc["images"] == 4 and doc["skipped"] == 1 and doc["branches"] == 3
    # the target domain is the image's own: the output for a cat image used y = 0
    d = Decomposition.load(tmp_path / "out" / "cat0.npz")
    x = torch.from_numpy(d.input)[None]
    f, _, _ = decompose_batch(gen, x, torch.tensor([0]))
    np.testing.assert_allclose(f[0], d.output, atol=1e-5)


def test_stats_match_brute_force(setup, tmp_path):
    gen, _, data = setup
    res = decompose_images(gen, find_images([data]), tmp_path / "out", ["cat", "dog"], img_size=16)
    doc = summarize(res.npz)
    decs = [Decomposition.load(p) for p in res.npz]
    V = torch.from_numpy(np.stack([d.components for d in decs], axis=1)).double()  # (M, N, C, H, W)
    F = metrics.response_matrix(V, "flatten")  # (M, N·D)
    np.testing.assert_allclose(doc["covariance"], metrics.covariance(F).numpy(), rtol=1e-6)
    corr = metrics.correlation(F)
    np.testing.assert_allclose(doc["correlation"], corr.numpy(), rtol=1e-6, atol=1e-9)
    assert doc["mean_abs_correlation"] == pytest.approx(metrics.mean_abs_offdiag(corr))
    assert doc["active"] == metrics.activity(F).active
    np.testing.assert_allclose(doc["pearson"], np.corrcoef(F.numpy()), atol=1e-6)
    # PSNR by hand, first image
    d = decs[0]
    a, b = (d.input + 1) / 2, np.clip((d.output + 1) / 2, 0, 1)
    psnr = 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))
    assert doc["psnr_per_image"][0] == pytest.approx(psnr, rel=1e-5)


def test_stats_silent_branch_and_perfect_correlation():
    s = DecompositionStats()
    base = np.random.default_rng(1).normal(size=(3, 8, 8))
    comps = np.stack([base, 2 * base, np.zeros_like(base)])  # v1 = 2 v0, v2 silent
    s.add(Decomposition(R=np.zeros_like(base), components=comps, output=comps.sum(0), input=comps.sum(0)))
    r = s.result()
    assert r["active"] == 2 and r["silent"] == 1
    assert r["correlation"][0][1] == pytest.approx(1.0)
    assert r["psnr"] is None and r["ssim"] == pytest.approx(1.0)  # identical images: infinite PSNR not averaged


def test_stretch_and_load_image(tmp_path):
    v = np.array([[[-4.0, 0.0, 4.0]]])
    out = stretch(v, percentile=100)
    np.testing.assert_allclose(out, [[[0.0, 0.5, 1.0]]])
    assert np.all(stretch(np.zeros((1, 2, 2))) == 0.5)
    Image.fromarray(np.full((10, 30, 3), 255, np.uint8)).save(tmp_path / "w.png")
    x = load_image(tmp_path / "w.png", 8)
    assert x.shape == (3, 8, 8) and torch.allclose(x, torch.ones_like(x))


def test_cli_decompose(setup, tmp_path, capsys):
    _, ckpt, data = setup
    out = tmp_path / "cli"
    assert main(["decompose", "--checkpoint", str(ckpt), str(data), "--out", str(out)]) == 0
    assert len(list(out.glob("*.npz"))) == 4
    assert (out / "grid.png").is_file() and (out / "profiles.png").is_file()  # drawn from the saved files
    # a loose image needs --domain
    loose = tmp_path / "loose.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(loose)
    capsys.readouterr()
    assert main(["decompose", "--checkpoint", str(ckpt), str(loose), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--domain" in err
    assert main(["decompose", "--checkpoint", str(ckpt), str(loose), "--out", str(out), "--domain", "dog"]) == 0
    assert Decomposition.load(out / "loose.npz").domain == "dog"


@pytest.mark.parametrize("argv, needle", [
    (["--checkpoint", "{tmp}/nope", "{data}"], "--checkpoint"),
    (["--checkpoint", "{ckpt}", "{tmp}/missing.png"], "IMAGE_OR_FOLDER"),
    (["--checkpoint", "{ckpt}", "{data}", "--domain", "horse"], "--domain"),
    (["--checkpoint", "{ckpt}", "{data}", "--img-size", "0"], "--img-size"),
])
def test_cli_errors_one_line(setup, tmp_path, capsys, argv, needle):
    _, ckpt, data = setup
    argv = [a.format(tmp=tmp_path, data=data, ckpt=ckpt) for a in argv]
    code = main(["decompose", *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code in (1, 2) and err.count("\n") == 0 and needle in err, err


def test_demo_decomposition_quick(tmp_path):
    from branchspec.experiments import demo, gan

    out = tmp_path / "decomposition"
    res = gan.run(demo.gan_config(quick=True), out)
    sec = gan.section(out)
    assert sec.key == "decomposition" and len(res["npz"]) == 4
    for f in sec.figures:
        assert (tmp_path / f.path).is_file(), f.path
    doc = json.loads((out / "decomposition.json").read_text())
    assert doc["images"] == 4 and doc["max_reconstruction_error"] < 1e-4
    assert doc["psnr"] is not None and doc["ssim"] is not None
    for p in res["npz"]:
        assert Decomposition.load(p).reconstruction_error() < 1e-4



def test_cli_held_out(tmp_path, capsys):
    data = _write_images(tmp_path / "data")
    files = [str(data / "dog" / "dog1.png"), str(data / "cat" / "cat1.png")]
    ckpt = tmp_path / "ck"
    make_checkpoint(ckpt, held_out={"per_domain": 1, "files": files, "labels": [1, 0]})
    out = tmp_path / "o"
    assert main(["decompose", "--checkpoint", str(ckpt), "--held-out", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.npz")) == ["cat1.npz", "dog1.npz"]
    assert Decomposition.load(out / "dog1.npz").domain == "dog"
    bare = tmp_path / "bare"
    make_checkpoint(bare)
    capsys.readouterr()
    for argv, needle in ((["--held-out"], "--held-out"), ([], "IMAGE_OR_FOLDER")):
        assert main(["decompose", "--checkpoint", str(bare), *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, err


def _classifier_checkpoint(path, class_names):
    from branchspec.models.registry import model_spec
    from branchspec.models.resnet import ClassifierConfig, build_classifier
    from branchspec.checkpoint import prefixed, save_checkpoint

    cfg = ClassifierConfig(num_branches=1, width=2, num_classes=len(class_names))
    state = {"model": model_spec("classifier", cfg.to_dict()), "train_config": {"clamp": True},
             "data": {"mean": [0.5] * 3, "std": [0.25] * 3, "class_names": list(class_names)}}
    save_checkpoint(path, prefixed("model", build_classifier(cfg).state_dict()), state)
    return path


def test_cli_judge_and_profiles(setup, tmp_path, capsys):
    """--judge adds the class-transfer scores to decomposition.json; profiles.png is drawn from it."""
    _, ckpt, data = setup
    clf = _classifier_checkpoint(tmp_path / "clf", ["ship", "dog", "cat"])
    out = tmp_path / "judged"
    assert main(["decompose", "--checkpoint", str(ckpt), str(data), "--out", str(out), "--judge", str(clf)]) == 0
    doc = json.loads((out / "decomposition.json").read_text())
    j = doc["judge"]
    assert j["images"] == 4 and j["domains"] == 2 and j["chance"] == 0.5
    for key in ("transfer_accuracy", "source_retention", "judge_accuracy_inputs"):
        assert 0 <= j[key] <= 1
    assert len(j["transfer_matrix"]) == 2 and len(j["transfer_change_share"]) == 3
    assert sum(j["transfer_change_share"]) == pytest.approx(1.0)
    assert j["psnr_residual_only"] == pytest.approx(doc["psnr_residual_only"], abs=1e-4)  # same images, same R
    assert set(doc["profiles"]) == {"energy_share", "frequency_centroid", "chroma_fraction", "spatial_entropy"}
    assert doc["profiles"]["energy_share"] == pytest.approx(doc["energy_share"])
    assert (out / "profiles.png").is_file() and "transfer accuracy" in capsys.readouterr().out
    ex = np.load(out / "transfer.npz")  # the first two images of each domain, G(x, t) for every target t
    assert ex["outputs"].shape[:2] == (4, 2) and ex["judged"].shape == (4, 2) and (out / "transfer.png").is_file()
    from branchspec.experiments.gan import section

    shown = [f for f in section(out).figures if f.path.endswith("transfer.png")]  # the report shows it
    assert len(shown) == 1 and f"--judge {clf}" in shown[0].command
    # a classifier without the generator's classes is a one-line error naming --judge
    bad = _classifier_checkpoint(tmp_path / "bad", ["ship", "truck"])
    assert main(["decompose", "--checkpoint", str(ckpt), str(data), "--out", str(out), "--judge", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--judge" in err


def test_hostile_image_names_stay_inside_out(setup, tmp_path, capsys):
    """Stems ``..``, ``.``, ``decomposition.json``, ``grid.png``, ``heldout``, ``transfer`` or two that differ only
    in case: every output is a distinct plain name inside ``--out``; nothing is written next to it."""
    _, ckpt, _ = setup
    src = tmp_path / "hostile" / "in" / "cat"
    src.mkdir(parents=True)
    a = (np.random.default_rng(1).random((20, 20, 3)) * 255).astype(np.uint8)
    stems = ["..", ".", "decomposition.json", "grid.png", "heldout", "transfer", "Cat", "cat", "a b", "x" * 240]
    for s in stems:
        Image.fromarray(a).save(src / f"{s}.png", format="PNG")
    box = tmp_path / "box"  # --out's parent: must stay as it was
    out = box / "out"
    out.mkdir(parents=True)
    rc = main(["decompose", "--checkpoint", str(ckpt), str(src), "--out", str(out), "--img-size", "16"])
    assert rc == 0, capsys.readouterr().err
    assert [p.name for p in box.iterdir()] == ["out"]
    npz = sorted(out.glob("*.npz"))
    names = {p.stem for p in npz} - {"transfer"}
    assert len(names) == len(stems) and all(len(n) <= 100 and not n.startswith(".") for n in names), names
    for n in names:
        assert (out / n / "regen.png").is_file() and (out / n).resolve().parent == out.resolve()
    doc = json.loads((out / "decomposition.json").read_text())
    assert doc["images"] == len(stems) and (out / "grid.png").is_file()
    assert set(doc["sources"]) == names and sorted(doc["sources"].values()) == sorted(stems)  # name -> image stem
    assert doc["sources"]["grid_png"] == "grid.png" and {doc["sources"][n] for n in ("Cat", "cat_2")} == {"Cat", "cat"}
