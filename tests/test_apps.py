"""Manipulation, augmentation and segmentation on constructed decompositions with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from branchspec.apps.augment import ComponentAugment, DecompositionDataset
from branchspec.apps.components import Decomposition
from branchspec.apps.manipulation import parse_alphas, subset_sum, sweep, with_gains
from branchspec.apps.segmentation import dice, iou, pair_geometry, row_pairs, segment
from branchspec.cli import main

H = W = 64
YY, XX = np.mgrid[:H, :W]


def _disc(cy, cx, r):
    return (YY - cy) ** 2 + (XX - cx) ** 2 <= r * r


def _bump(cy, cx, s):
    return np.exp(-((YY - cy) ** 2 + (XX - cx) ** 2) / (2.0 * s * s))


EYES = _disc(24, 18, 6) | _disc(24, 46, 6)
NOSE = _disc(47, 32, 5)


def cat_face(seed=0, locator=2, target=4, m=6, hard_discs=False) -> Decomposition:
    """Locator: bright bumps (or hard discs) at both eyes and the nose; target: flat patches there, texture elsewhere."""
    rng = np.random.default_rng(seed)
    comps = rng.normal(0, 0.05, (m, 3, H, W))  # weak noise components
    comps[1] = 0.3 * (XX / W)[None] * np.ones((3, 1, 1))  # a smooth shading component
    loc = _bump(24, 18, 4) + _bump(24, 46, 4) + _bump(47, 32, 3.5)
    if hard_discs:
        loc = (EYES | NOSE).astype(float)
    comps[locator] = loc[None] * np.array([1.0, 0.8, 0.6])[:, None, None]
    tex = rng.normal(0, 0.3, (H, W))
    tex[EYES | NOSE] = 1.0
    comps[target] = np.stack([tex, 0.9 * tex, 0.8 * tex])
    R = 0.1 * np.ones((3, H, W))
    return Decomposition(R=R, components=comps.astype(np.float32), output=(R + comps.sum(0)).astype(np.float32),
                         input=(R + comps.sum(0)).astype(np.float32))


def random_dec(m=4, seed=0) -> Decomposition:
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(3, 8, 8)).astype(np.float32)
    v = rng.normal(size=(m, 3, 8, 8)).astype(np.float32)
    return Decomposition(R=R, components=v, output=R + v.sum(0))


# ---------------------------------------------------------------- manipulation
def test_sweep_identities():
    d = random_dec()
    x = sweep(d, 2, [1.0, 0.0, 2.5])
    np.testing.assert_allclose(x[0], d.output, atol=1e-5)  # α = 1: the re-generation
    np.testing.assert_allclose(x[1], d.R + d.components[[0, 1, 3]].sum(0), atol=1e-5)  # α = 0 removes v_2
    np.testing.assert_allclose(x[2], d.R + d.components[[0, 1, 3]].sum(0) + 2.5 * d.components[2], atol=1e-5)


def test_subsets_and_gains():
    d = random_dec()
    np.testing.assert_allclose(subset_sum(d, [0, 3]), d.R + d.components[0] + d.components[3], atol=1e-5)
    np.testing.assert_allclose(subset_sum(d, []), d.R, atol=1e-6)
    # the two halves of a partition add up to output + R
    np.testing.assert_allclose(subset_sum(d, [0, 1]) + subset_sum(d, [2, 3]), d.output + d.R, atol=1e-5)
    g = [0.5, -1.0, 2.0, 0.0]
    brute = d.R + sum(gk * vk for gk, vk in zip(g, d.components))
    np.testing.assert_allclose(with_gains(d, g), brute, atol=1e-5)
    np.testing.assert_allclose(with_gains(d, [1.0] * 4), d.output, atol=1e-5)


def test_parse_alphas():
    assert parse_alphas("-1:3:9") == [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert parse_alphas("0, 2") == [0.0, 2.0]


def test_cli_manipulate(tmp_path, capsys):
    d = random_dec()
    p = d.save(tmp_path / "d.npz")
    out = tmp_path / "m"
    assert main(["manipulate", str(p), "--component", "1", "--alphas=-1:3:5", "--out", str(out),
                 "--subsets", "0,3", "1,2", "--gains", "1,0,2,1"]) == 0
    for f in ["strip.png", "sweep_1.gif", "subsets.png", "gains.png", "sweeps.npz", "manipulate.json"]:
        assert (out / f).is_file(), f
    with np.load(out / "sweeps.npz") as z:
        np.testing.assert_allclose(z["images"][0], sweep(d, 1, [-1, 0, 1, 2, 3]), atol=1e-6)
    with Image.open(out / "sweep_1.gif") as im:
        assert im.n_frames == 8  # 5 forwards + 3 back (ping-pong)
    with np.load(out / "subsets.npz") as z:
        np.testing.assert_allclose(z["images"][1], subset_sum(d, [0, 3]), atol=1e-6)


@pytest.mark.parametrize("extra, needle", [
    (["--component", "7"], "--component"),
    (["--alphas", "a:b"], "--alphas"),
    (["--subsets", "0,x"], "--subsets"),
    (["--gains", "1,2"], "--gains"),
])
def test_cli_manipulate_errors(tmp_path, capsys, extra, needle):
    p = random_dec().save(tmp_path / "d.npz")
    assert main(["manipulate", str(p), "--out", str(tmp_path / "m"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err, err


def test_cli_bad_files_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    notdec = tmp_path / "other.npz"
    np.savez(notdec, a=np.zeros(3))
    for cmd in ("manipulate", "segment"):
        for path, needle in ((tmp_path / "none.npz", "no such file"), (bad, "not a readable"), (notdec, "missing")):
            code = main([cmd, str(path), "--out", str(tmp_path / "o")])
            err = capsys.readouterr().err.strip()
            assert code in (1, 2) and err.count("\n") == 0 and needle in err, (cmd, err)


# ---------------------------------------------------------------- augmentation
def test_augment_seeded_and_bounded():
    d = random_dec(m=5)
    R, v = torch.from_numpy(d.R), torch.from_numpy(d.components)
    a1, a2 = ComponentAugment(0.3, seed=7), ComponentAugment(0.3, seed=7)
    x1, g1 = a1(R, v, return_gains=True)
    x2, g2 = a2(R, v, return_gains=True)
    assert torch.equal(x1, x2) and torch.equal(g1, g2)
    x3, g3 = a1(R, v, return_gains=True)
    assert not torch.equal(g1, g3)  # the stream moves on
    a1.reset()
    assert torch.equal(a1(R, v), x1)
    # bounds and the formula, by a loop
    gb = ComponentAugment(0.25, seed=0).sample_gains((5, 1000))
    assert gb.min() >= 0.75 and gb.max() <= 1.25 and gb.std() > 0.1
    brute = R + sum(float(g1[k]) * v[k] for k in range(5))
    torch.testing.assert_close(x1, brute, atol=1e-5, rtol=1e-5)


def test_augment_chosen_components_and_batch():
    d = random_dec(m=4)
    R, v = torch.from_numpy(d.R), torch.from_numpy(d.components)
    aug = ComponentAugment(0.5, components=[1, 3], seed=1)
    Rb, vb = R[None].repeat(6, 1, 1, 1), v[:, None].repeat(1, 6, 1, 1, 1)  # (6, C, H, W), (M, 6, C, H, W)
    x, g = aug(Rb, vb, return_gains=True)
    assert g.shape == (4, 6)
    assert torch.all(g[[0, 2]] == 1.0) and torch.all((g[[1, 3]] - 1).abs() <= 0.5)
    assert len({tuple(g[:, b].tolist()) for b in range(6)}) == 6  # per-sample gains
    assert torch.allclose(ComponentAugment(0.0)(R, v), torch.from_numpy(d.output), atol=1e-5)
    with pytest.raises(ValueError):
        ComponentAugment(-0.1)


def test_decomposition_dataset(tmp_path):
    paths = [random_dec(seed=s).save(tmp_path / f"{s}.npz") for s in range(3)]
    ds = DecompositionDataset(paths, ComponentAugment(0.2, seed=0))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch.shape == (3, 3, 8, 8)


# ---------------------------------------------------------------- segmentation
@pytest.mark.parametrize("hard", [False, True])
def test_segment_eyes_drops_nose(hard):
    d = cat_face(hard_discs=hard)
    res = segment(d)
    assert res.automatic == {"locators": True, "target": True}
    assert res.locators == [2] and res.target == 4  # the heuristic finds them
    assert dice(res.mask, EYES) >= 0.9
    assert not (res.mask & NOSE).any()  # alone on its rows: dropped
    assert (res.raw & NOSE).sum() > 0.5 * NOSE.sum()  # … although Chan–Vese found it
    # manual override, other indices
    d2 = cat_face(seed=1, locator=0, target=5)
    res2 = segment(d2, locators=[0], target=5)
    assert res2.automatic == {"locators": False, "target": False} and dice(res2.mask, EYES) >= 0.9


def test_row_pairs_brute_force():
    lab = np.zeros((10, 12), int)
    lab[1:4, 0:2] = 1
    lab[1:4, 5:7] = 2  # pair with 1
    lab[6:8, 3:5] = 3  # alone
    lab[6:9, 8:10] = 4  # … and 5: a second pair lower down
    lab[6:9, 10:12] = 5
    assert row_pairs(lab) == [1, 2]  # rows 6–7 hold three components
    lab[6:8, 3:5] = 0
    assert row_pairs(lab) == [1, 2, 4, 5]


def test_pair_geometry_accepts_eyes_and_rejects_border_and_one_sided_pairs():
    def two(c1, c2, r=4):
        return _disc(*c1, r) | _disc(*c2, r)

    g = pair_geometry(two((24, 18), (25, 46)))  # 64x64: eye rows 0.38, left and right of the midline
    assert g["eye_like"] and [round(r["x"], 3) for r in g["regions"]] == [round(18 / 64, 3), round(46 / 64, 3)]
    assert not pair_geometry(two((2, 18), (2, 46)))["eye_like"]  # touching the top border
    assert not pair_geometry(two((24, 10), (24, 26)))["eye_like"]  # both left of the midline
    assert not pair_geometry(two((20, 18), (34, 46)))["eye_like"]  # heights differ by 0.22 of the image
    assert not pair_geometry(two((56, 18), (56, 46)))["eye_like"]  # below the eye band (mouth level)
    assert not pair_geometry(_disc(24, 18, 4) | _disc(25, 46, 12))["eye_like"]  # areas 9x apart
    assert not pair_geometry(_disc(24, 18, 4))["eye_like"] and not pair_geometry(np.zeros((8, 8), bool))["eye_like"]


def test_dice_iou():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2] = True
    b[1:3] = True
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(1 / 3)
    assert dice(a, a) == 1.0 and iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_cli_segment(tmp_path, capsys):
    p = cat_face().save(tmp_path / "cat.npz")
    Image.fromarray((EYES * 255).astype(np.uint8)).save(tmp_path / "truth.png")
    out = tmp_path / "s"
    assert main(["segment", str(p), "--out", str(out), "--truth", str(tmp_path / "truth.png")]) == 0
    doc = json.loads((out / "segment.json").read_text())
    assert doc["dice"] >= 0.9 and doc["iou"] >= 0.8 and doc["locators"] == [2] and doc["target"] == 4
    assert np.array_equal(np.load(out / "mask.npy"), np.asarray(Image.open(out / "mask.png")) > 127)
    for f in ["overlay.png", "segmentation.png"]:
        assert (out / f).is_file()
    capsys.readouterr()
    for extra, needle in ((["--target", "9"], "--target"), (["--locator", "1,x"], "--locator"),
                          (["--truth", str(tmp_path / "no.png")], "--truth")):
        assert main(["segment", str(p), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, err


# ---------------------------------------------------------------- demo part
def test_demo_apps_quick(tmp_path):
    from branchspec.experiments import apps, demo

    cfg = demo.apps_config(tmp_path, quick=True)
    with pytest.raises(Exception, match="decomposition"):
        apps.run(cfg, tmp_path / "apps")
    cat_face().save(tmp_path / "decomposition" / "cat0.npz")
    res = apps.run(cfg, tmp_path / "apps")
    sec = apps.section(tmp_path / "apps")
    assert sec.key == "apps" and res["segmentation"]["mask_pixels"] >= 0
    assert len(sec.figures) == 5
    for f in sec.figures:
        assert (tmp_path / f.path).is_file(), f.path
    sec.save(tmp_path)



def test_decomposition_file_validation(tmp_path):
    from branchspec.errors import BranchspecError

    ok = random_dec()
    with pytest.raises(BranchspecError, match="components"):
        Decomposition(R=ok.R, components=ok.components[:, :2], output=ok.output)
    with pytest.raises(BranchspecError, match="output"):
        Decomposition(R=ok.R, components=ok.components, output=ok.output[:2])
    bad = ok.components.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(BranchspecError, match="non-finite"):
        Decomposition(R=ok.R, components=bad, output=ok.output)
    p = ok.save(tmp_path / "d.npz")
    back = Decomposition.load(p)
    assert np.array_equal(back.components, ok.components) and back.value_range == (-1.0, 1.0)
