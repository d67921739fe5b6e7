"""App. F and App. A over a folder of decompositions, on constructed decompositions with known answers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from branchspec.apps.batch import default_subsets, manipulate_folder, segment_folder, strongest_component
from branchspec.apps.components import Decomposition
from branchspec.apps.manipulation import subset_sum, sweep
from branchspec.apps.segmentation import SegmentConfig
from branchspec.cli import main

H = W = 48
YY, XX = np.mgrid[:H, :W]


def _disc(cy, cx, r):
    return (YY - cy) ** 2 + (XX - cx) ** 2 <= r * r


def face(seed: int, pair: bool) -> Decomposition:
    """Locator v2: dark blobs (two on one row if ``pair``, else one in the middle); target v4 flat there."""
    rng = np.random.default_rng(seed)
    blobs = (_disc(18, 13, 5) | _disc(18, 35, 5)) if pair else _disc(24, 24, 6)
    comps = rng.normal(0, 0.05, (5, 3, H, W))
    comps[1] = 0.3 * (XX / W)[None] * np.ones((3, 1, 1))
    comps[2] = -blobs.astype(float)[None] * np.array([1.0, 0.8, 0.6])[:, None, None]  # dark blobs
    tex = rng.normal(0, 0.3, (H, W))
    tex[blobs] = 1.0
    comps[4] = np.stack([tex, 0.9 * tex, 0.8 * tex])
    R = 0.1 * np.ones((3, H, W))
    out = (R + comps.sum(0)).astype(np.float32)
    return Decomposition(R=R, components=comps.astype(np.float32), output=out, input=out, domain="cat")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("dec")
    face(0, True).save(d / "a_pair.npz")
    face(1, False).save(d / "b_single.npz")
    face(2, True).save(d / "c_pair.npz")
    np.savez(d / "z_other.npz", x=np.zeros(3))  # not a decomposition: skipped, listed
    return d


FAST = SegmentConfig(max_num_iter=100)


@pytest.fixture(scope="module")
def segmented(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    return segment_folder(sorted(folder.glob("*.npz")), out, cfg=FAST), out


def test_segment_folder_counts_pairs(segmented):
    doc, seg = segmented
    found = {r["name"]: r["pair_found"] for r in doc["per_image"]}
    assert found == {"a_pair": True, "b_single": False, "c_pair": True}
    assert doc["images"] == 3 and doc["pairs_found"] == 2 == sum(found.values())
    assert doc["pair_fraction"] == pytest.approx(2 / 3)
    eye = {r["name"]: r["eye_like"] for r in doc["per_image"]}  # the constructed pairs sit like eyes
    assert eye == found and doc["eye_like_pairs"] == 2
    assert [s["file"].endswith("z_other.npz") for s in doc["skipped"]] == [True]
    for r in doc["per_image"]:  # the heuristic picks the constructed locator and target
        assert r["locators"] == [2] and r["target"] == 4
        assert (r["kept"] == 2) == r["pair_found"]
        one = json.loads((seg / r["name"] / "segment.json").read_text())
        assert one["regions_kept"] == r["kept"] and one["mask_pixels"] == r["mask_pixels"]
    assert doc["config"]["max_num_iter"] == 100
    with np.load(seg / "montage.npz") as z:
        assert z["images"].shape == (3, 3, H, W) and z["found"].tolist() == [True, False, True]
        assert z["masks"][1].sum() == 0 and z["masks"][0].sum() > 0


def test_cli_segment_folder(folder, tmp_path, capsys, drawn):
    out = tmp_path / "s"
    assert main(["segment", str(folder), "--out", str(out), "--iterations", "100"]) == 0
    assert "eye pair found on 2 of 3 image(s) by the App. F rule, placed like eyes on 2" in capsys.readouterr().out
    doc = json.loads((out / "segment.json").read_text())
    assert doc["pairs_found"] == 2 and doc["config"]["max_num_iter"] == 100
    (fig,) = drawn
    fig.check_png(out / "montage.png")
    assert sum(len(ims) for ims in fig.images) == 3  # one overlay per image of the folder
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, needle in (([str(folder), "--truth", str(folder / "a_pair.npz")], "--truth"),
                         ([str(empty)], "no .npz"), ([str(tmp_path / "nope")], "no such"),
                         ([str(folder), "--target", "5"], "--target"), ([str(folder), "--locator", "1,7"], "--locator")):
        assert main(["segment", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, err


def _energies(scale) -> Decomposition:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 3, 8, 8)) * np.asarray(scale)[:, None, None, None]
    R = rng.normal(size=(3, 8, 8))
    return Decomposition(R=R.astype(np.float32), components=v.astype(np.float32), output=(R + v.sum(0)).astype(np.float32))


def test_manipulate_folder_strongest_and_subsets(tmp_path):
    a, b = _energies([1, 5, 1, 1]), _energies([1, 1, 1, 9])
    assert strongest_component(a) == 1 and strongest_component(b) == 3
    assert default_subsets(b) == [[3], [0, 1, 2]]
    files = [a.save(tmp_path / "a.npz"), b.save(tmp_path / "b.npz")]
    alphas = [0.0, 1.0, 2.0]
    doc = manipulate_folder(files, tmp_path / "m", alphas=alphas)
    assert [r["component"] for r in doc["per_image"]] == [1, 3]
    assert doc["per_image"][1]["energy_share"] > 0.8
    with np.load(tmp_path / "m" / "sweeps.npz") as z:
        np.testing.assert_allclose(z["images"][0], sweep(a, 1, alphas), atol=1e-6)
        np.testing.assert_allclose(z["images"][1], sweep(b, 3, alphas), atol=1e-6)
        np.testing.assert_allclose(z["images"][1][1], b.output, atol=1e-5)  # α = 1 is the re-generation
    with np.load(tmp_path / "m" / "subsets.npz") as z:
        assert z["images"].shape == (2, 4, 3, 8, 8)  # input (here: re-gen., no input), re-gen., 2 subsets
        np.testing.assert_allclose(z["images"][1][2], subset_sum(b, [3]), atol=1e-6)
        np.testing.assert_allclose(z["images"][1][3], subset_sum(b, [0, 1, 2]), atol=1e-6)
    doc = manipulate_folder(files, tmp_path / "m2", component=0, alphas=alphas, subsets=[[0, 2]])
    assert [r["component"] for r in doc["per_image"]] == [0, 0] and doc["per_image"][0]["subsets"] == [[0, 2]]


def test_cli_manipulate_folder(tmp_path, capsys):
    d = tmp_path / "dec"
    _energies([1, 5, 1, 1]).save(d / "a.npz")
    _energies([1, 1, 1, 9]).save(d / "b.npz")
    out = tmp_path / "m"
    assert main(["manipulate", str(d), "--out", str(out), "--alphas=0:2:3"]) == 0
    for f in ("sweeps.png", "subsets.png", "manipulate.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "manipulate.json").read_text())["images"] == 2
    capsys.readouterr()
    for extra, needle in ((["--component", "7"], "--component"), (["--component", "0,1"], "--component"),
                          (["--gains", "1,1,1,1"], "--gains")):
        assert main(["manipulate", str(d), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, err


# ---------------------------------------------------------------- report sections (judge metrics in the HTML)
JUDGE = {"transfer_accuracy": 0.7125, "source_retention": 0.8375, "images": 80, "domains": 4, "chance": 0.25,
         "judge_accuracy_inputs": 0.9, "judge_accuracy_residual": 0.4, "psnr_own": 27.5, "ssim_own": 0.91,
         "psnr_residual_only": 24.25, "ssim_residual_only": 0.8, "transfer_change_share": [0.1, 0.6, 0.3]}


def test_judge_numbers():
    from branchspec.apps.judge import judge_numbers

    rows = judge_numbers(JUDGE)
    assert rows["transfer accuracy: G(x, ỹ) judged ỹ, ỹ ≠ y"] == "0.713"
    assert rows["source retention: G(x, y) judged y"] == "0.838"
    assert rows["own-domain PSNR (dB): G(x, y) vs x / R vs x"] == "27.50 / 24.25"
    assert rows["branch class transfer changes most"] == "v1 (60% of the change)"
    assert list(judge_numbers(None).values()) == ["not run (branchspec decompose --judge CLASSIFIER_CKPT)"]


def test_folder_report_shows_judge_and_pairs(segmented, tmp_path):
    from branchspec.experiments.apps_folders import write_folder_report
    from branchspec.report import collect_sections

    out = tmp_path / "real"
    dec = out / "cats"
    dec.mkdir(parents=True)
    base = {"images": 3, "skipped": 0, "img_size": 48, "psnr": 26.0, "psnr_residual_only": 24.0, "ssim": 0.9,
            "ssim_residual_only": 0.8, "mean_abs_correlation": 0.15, "mean_abs_pearson": 0.1, "active": 5, "silent": 0}
    (dec / "decomposition.json").write_text(json.dumps({**base, "judge": JUDGE}))
    (out / "faces").mkdir()
    (out / "faces" / "decomposition.json").write_text(json.dumps(base))
    shutil.copytree(segmented[1], out / "cats-segment")
    html = write_folder_report(out).read_text()
    assert "transfer accuracy" in html and "0.713" in html and "0.838" in html and "27.50 / 24.25" in html
    assert "26.00 / 24.00" in html  # PSNR vs R of the decomposition itself
    assert "2 of 3" in html and "not run" in html  # eye pairs; the faces folder has no judge
    keys = [s.key for s in collect_sections(out)]  # saved, so 'branchspec report' rebuilds the page
    assert keys == ["cats", "cats-segment", "faces"]


def test_montage_rows_capped(tmp_path):
    from PIL import Image

    from branchspec.figures.apps_batch import sweep_montage

    files = [_energies([1, 1 + i, 1, 1]).save(tmp_path / f"d{i}.npz") for i in range(3)]
    manipulate_folder(files, tmp_path / "m", alphas=[0.0, 1.0])
    h = [Image.open(sweep_montage(tmp_path / "m" / "sweeps.npz", tmp_path / f"s{r}.png", max_rows=r)).size[1]
         for r in (1, 3)]
    assert h[0] < h[1]


def test_segment_folder_counts_pairs_on_marked_eyes(folder, tmp_path, capsys):
    """--eyes MARKS.json: a pair counts only where it lies on the marked centres; unmarked images are not counted."""
    marks = {"a_pair": [[0.375, 0.27], [0.375, 0.73]],  # the constructed blobs: (18, 13) and (18, 35) of 48
             "c_pair": [[0.75, 0.3], [0.75, 0.7]],  # marked elsewhere: the found pair is not on them
             "b_single": [[0.375, 0.27], [0.375, 0.73]]}  # no pair found: not on the eyes
    path = tmp_path / "marks.json"
    path.write_text(json.dumps(marks))
    out = tmp_path / "s"
    assert main(["segment", str(folder), "--out", str(out), "--iterations", "100", "--eyes", str(path)]) == 0
    assert "kept pair on the true eyes: 1 of 3 marked image(s) (0.33)" in capsys.readouterr().out
    doc = json.loads((out / "segment.json").read_text())
    assert {r["name"]: r["on_eyes"] for r in doc["per_image"]} == {"a_pair": True, "b_single": False, "c_pair": False}
    bad = tmp_path / "bad.json"
    for text in ("{", json.dumps({"a": [[0.1, 2.0], [0.1, 0.2]]}), json.dumps([1, 2])):
        bad.write_text(text)
        assert main(["segment", str(folder), "--out", str(out), "--eyes", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "--eyes" in err, err


def test_marks_find_images_whose_written_names_changed(folder, tmp_path, capsys):
    """Marks are keyed by image name (``cat.3000``); decompose writes ``cat_3000.npz`` (safe names): the mark
    is still found. Marks naming no image at all are a one-line error, not a silent "0 of 0"."""
    renamed = tmp_path / "dec"
    shutil.copytree(folder, renamed)
    (renamed / "a_pair.npz").rename(renamed / "cat_3000.npz")
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps({"cat.3000": [[0.375, 0.27], [0.375, 0.73]]}))
    assert main(["segment", str(renamed), "--out", str(tmp_path / "s"), "--iterations", "100", "--eyes", str(marks)]) == 0
    assert "kept pair on the true eyes: 1 of 1 marked image(s)" in capsys.readouterr().out
    marks.write_text(json.dumps({"dog.1": [[0.3, 0.3], [0.3, 0.7]]}))
    assert main(["segment", str(renamed), "--out", str(tmp_path / "t"), "--eyes", str(marks)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("branchspec segment: error: --eyes: none of the 1 marked images"), err


def test_marks_follow_the_image_when_two_names_became_one(folder, tmp_path, capsys):
    """``cat.1`` and ``cat_1`` both become ``cat_1``; decompose writes the second as ``cat_1_2`` and records each
    name's image stem in decomposition.json: the marks of ``cat_1`` go to ``cat_1_2``, not to ``cat.1``'s file."""
    dec = tmp_path / "dec"
    dec.mkdir()
    shutil.copy(folder / "b_single.npz", dec / "cat_1.npz")  # image cat.1: no pair
    shutil.copy(folder / "a_pair.npz", dec / "cat_1_2.npz")  # image cat_1: a pair on the marked eyes
    (dec / "decomposition.json").write_text(json.dumps({"sources": {"cat_1": "cat.1", "cat_1_2": "cat_1"}}))
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps({"cat_1": [[0.375, 0.27], [0.375, 0.73]]}))
    assert main(["segment", str(dec), "--out", str(tmp_path / "s"), "--iterations", "100", "--eyes", str(marks)]) == 0
    assert "kept pair on the true eyes: 1 of 1 marked image(s)" in capsys.readouterr().out
    doc = json.loads((tmp_path / "s" / "segment.json").read_text())
    assert {r["name"]: r["on_eyes"] for r in doc["per_image"]} == {"cat_1": None, "cat_1_2": True}


def test_pair_on_eyes_by_hand():
    from branchspec.apps.spatial import EYE_CENTRES, pair_on_eyes

    left, right = {"x": EYE_CENTRES[0][1], "y": EYE_CENTRES[0][0]}, {"x": EYE_CENTRES[1][1], "y": EYE_CENTRES[1][0]}
    assert pair_on_eyes([left, right]) and pair_on_eyes([right, left])
    assert not pair_on_eyes([left, left])  # both on one eye
    assert not pair_on_eyes([left])
    assert not pair_on_eyes([left, {"x": right["x"], "y": right["y"] + 0.11}])  # just outside the tolerance
    assert pair_on_eyes([left, {"x": right["x"], "y": right["y"] + 0.11}], tol=0.12)


def test_a_folder_config_is_the_commands_path(folder, segmented, tmp_path):
    """experiments.apps with ``folder``: the batch functions and their montages, as `segment` / `manipulate` FOLDER."""
    from branchspec.errors import ConfigError
    from branchspec.experiments import apps

    cfg = apps.Config(folder=str(folder), segment=apps.Segment(iterations=100, folder="seg"),
                      manipulate=apps.Manipulate(alphas=(0.0, 1.0), subsets="thirds", folder="man"))
    res = apps.run(cfg, tmp_path)
    direct = json.loads((segmented[1] / "segment.json").read_text())
    seg = json.loads((tmp_path / "seg" / "segment.json").read_text())
    assert [r["kept"] for r in seg["per_image"]] == [r["kept"] for r in direct["per_image"]]
    assert res["segmentation"]["pairs_found"] == direct["pairs_found"] == 2 and "per_image" not in res["segmentation"]
    assert (tmp_path / "seg" / "montage.png").is_file() and (tmp_path / "man" / "sweeps.png").is_file()
    man = json.loads((tmp_path / "man" / "manipulate.json").read_text())
    assert man["subset_rule"] == "strongest third by energy vs the rest" and res["manipulation"]["images"] == 3
    for bad in (apps.Config(folder=str(folder), augment=apps.Augment()),
                apps.Config(folder=str(folder), manipulate=apps.Manipulate(gains=(1.0,) * 5)),
                apps.Config(folder=str(folder), segment=apps.Segment(truth="mask.png"))):
        with pytest.raises(ConfigError):
            apps.run(bad, tmp_path / "bad")
