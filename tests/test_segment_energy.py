"""App. F's ``segment_on="energy"`` variant on a constructed small face whose eyes are strokes of both signs."""

from __future__ import annotations

import numpy as np
import pytest

from branchspec.apps.components import Decomposition
from branchspec.apps.segmentation import SegmentConfig, pair_geometry, segment
from branchspec.apps.spatial import pair_on_eyes

S = 64
YY, XX = np.mgrid[:S, :S]


def stroke_face(seed: int = 0) -> Decomposition:
    """Component 1 draws each eye as a bright stroke above a dark one (as the 64² face model's v1 does) and the
    mouth as one long stroke; the others are noise and shading. The eye centres are (18, 18) and (18, 45)."""
    rng = np.random.default_rng(seed)
    comps = rng.normal(0, 0.02, (4, 3, S, S))
    comps[2] += 0.2 * (YY / S)[None]  # smooth shading
    strokes = np.zeros((S, S))
    for cx in (18, 45):
        strokes[16:18, cx - 4:cx + 4] = 1.0  # bright upper lid
        strokes[19:21, cx - 4:cx + 4] = -1.0  # dark lower lid
    strokes[44:47, 22:42] = -0.8  # the mouth: one region alone on its rows
    comps[1] += strokes[None]
    R = np.full((3, S, S), 0.5)
    return Decomposition(R=R, components=comps.astype(np.float32), output=(R + comps.sum(0)).astype(np.float32))


def _on_eyes(res) -> bool:
    return pair_on_eyes(pair_geometry(res.mask)["regions"], centres=((18 / S, 18 / S), (18 / S, 45 / S)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_energy_mode_finds_eyes_drawn_as_mixed_sign_strokes(seed):
    dec = stroke_face(seed)
    res = segment(dec, locators=[1], cfg=SegmentConfig(segment_on="energy", energy_sigma=1.5))
    assert res.kept == 2 and _on_eyes(res)
    assert res.target == 1  # the locator's energy is what was segmented


def test_value_mode_is_the_paper_default_and_sigma_zero_is_unsmoothed():
    cfg = SegmentConfig()
    assert cfg.segment_on == "value" and cfg.energy_sigma == 0.0
    with pytest.raises(ValueError, match="segment_on"):
        SegmentConfig(segment_on="edges")
    with pytest.raises(ValueError, match="energy_sigma"):
        SegmentConfig(energy_sigma=-1.0)


def nostril_face(seed: int = 0) -> Decomposition:
    """The stroke face with a second, weaker pair on other rows (nostrils at rows 32–34): App. F's row rule keeps
    both pairs (four regions), so no eye pair is found by it."""
    dec = stroke_face(seed)
    comps = dec.components.copy()
    for cx in (27, 36):
        comps[1, :, 32:35, cx - 2:cx + 2] += 0.7
    return Decomposition(R=dec.R, components=comps, output=(dec.R + comps.sum(0)).astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1])
def test_strongest_pair_keeps_the_eyes_where_the_row_rule_keeps_two_pairs(seed):
    dec = nostril_face(seed)
    rows = segment(dec, locators=[1], cfg=SegmentConfig(segment_on="energy", energy_sigma=1.5))
    assert rows.kept == 4 and not _on_eyes(rows)  # the paper's rule: two pairs, no single eye pair
    best = segment(dec, locators=[1], cfg=SegmentConfig(segment_on="energy", energy_sigma=1.5, pair_rule="strongest"))
    assert best.kept == 2 and _on_eyes(best)
    with pytest.raises(ValueError, match="pair_rule"):
        SegmentConfig(pair_rule="best")


def highlight_face(seed: int) -> Decomposition:
    """The stroke face plus a lighting component (3): one round highlight at a random place on a quiet field.
    Its peak ratio beats the eye strokes', so the per-image rule (App. F) takes it as the locator. Component 0
    draws the eyes too, weaker (two face-part branches, as v1 and v4 of the 64² face model)."""
    dec = stroke_face(seed)
    comps = dec.components.copy()
    rng = np.random.default_rng(100 + seed)
    y, x = rng.integers(8, S - 8, 2)
    comps[0] += 0.6 * comps[1]
    comps[3] *= 0.2
    comps[3] += 0.5 * ((YY - y) ** 2 + (XX - x) ** 2 <= 36)[None]
    return Decomposition(R=dec.R, components=comps, output=(dec.R + comps.sum(0)).astype(np.float32))


def test_folder_locators_take_the_component_that_yields_pairs_not_the_brightest_spot(tmp_path):
    from branchspec.apps.batch import folder_locators, segment_folder

    decs = [highlight_face(s) for s in range(6)]
    cfg = SegmentConfig(segment_on="energy", energy_sigma=1.5)
    assert all(segment(d, cfg=cfg, candidates=1).locators == [3] for d in decs)  # per image: the highlight
    locs, rates = folder_locators(decs, cfg, count=1)
    assert locs[0] in (0, 1) and rates[0] == rates[1] == 1.0 and rates[3] < 0.5  # the eye branches, not the spot
    files = [d.save(tmp_path / f"f{i}.npz") for i, d in enumerate(decs)]
    doc = segment_folder(files, tmp_path / "out", cfg=cfg, choose_locators="folder",
                         eyes={"*": [(18 / S, 18 / S), (18 / S, 45 / S)]})
    assert sorted(doc["locator_choice"]["locators"]) == [0, 1] and doc["on_eyes"] == 6


def test_a_folder_choice_for_one_image_is_a_one_line_error(tmp_path, capsys):
    from branchspec.cli import main

    path = stroke_face(0).save(tmp_path / "one.npz")
    assert main(["segment", str(path), "--out", str(tmp_path / "out"), "--choose-locators", "folder"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--choose-locators" in err, err
    assert not (tmp_path / "out").exists()  # refused before anything is written
