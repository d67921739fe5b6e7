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
