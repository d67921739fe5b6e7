"""Border ratio, entropy and face-region shares (branchspec.apps.spatial) on constructed energy maps."""

import numpy as np
import pytest

from branchspec.apps.decomp_stats import DecompositionStats
from branchspec.apps.components import Decomposition
from branchspec.apps.spatial import (
    EYE_CENTRES, FACE_REGIONS, SpatialStats, border_band, border_ratio, energy_maps, localisation, normalised_entropy,
    region_masks,
)


def test_border_ratio_of_uniform_frame_and_centre():
    side = 40  # band 2: the outer band is 40² - 36² = 304 of 1600 pixels
    e = np.zeros((3, side, side))
    e[0] = 1.0  # uniform: ratio exactly 1
    e[1, :2], e[1, -2:], e[1, :, :2], e[1, :, -2:] = 1.0, 1.0, 1.0, 1.0  # all energy in the band
    e[2, 10:30, 10:30] = 1.0  # all energy inside: ratio 0
    r = border_ratio(e)
    assert border_band(side) == 2
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx(1600 / 304)
    assert r[2] == 0.0


def test_border_ratio_by_hand_on_random_maps():
    rng = np.random.default_rng(0)
    e = rng.random((2, 20, 20))
    band = np.zeros((20, 20), bool)
    band[0], band[-1], band[:, 0], band[:, -1] = True, True, True, True
    want = [(m[band].sum() / m.sum()) / band.mean() for m in e]
    np.testing.assert_allclose(border_ratio(e, band=1), want)


def test_silent_branch_has_ratio_one_and_entropy_extremes():
    e = np.zeros((3, 8, 8))
    e[1] = 2.0
    e[2, 3, 4] = 5.0  # one pixel
    assert border_ratio(e)[0] == 1.0
    h = normalised_entropy(e)
    assert h[1] == pytest.approx(1.0) and h[2] == pytest.approx(0.0)


def test_energy_maps_sum_channels():
    v = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    np.testing.assert_allclose(energy_maps(v), (v**2).sum(1))


def test_face_regions_find_an_eye_branch():
    side = 64
    masks = region_masks(side, side)
    assert set(masks) == set(FACE_REGIONS)
    for r, c in EYE_CENTRES:  # both eye centres lie in the eye region
        assert masks["eyes"][int(r * side), int(c * side)]
    assert not (masks["eyes"] & masks["mouth"]).any() and not (masks["eyes"] & masks["background"]).any()
    e = np.ones((2, side, side))
    e[1] = masks["eyes"] * 10.0  # branch 1 lives on the eyes only
    loc = localisation(e)
    assert loc["share"]["eyes"][0] == pytest.approx(loc["area"]["eyes"])  # uniform: share = area
    assert loc["share"]["eyes"][1] == pytest.approx(1.0)
    assert loc["share"]["mouth"][1] == 0.0
    assert loc["entropy"][1] < loc["entropy"][0]


def test_spatial_stats_accumulate_and_join_decomposition_stats():
    rng = np.random.default_rng(1)
    vs = [rng.normal(size=(3, 3, 16, 16)) for _ in range(4)]
    s = SpatialStats()
    for v in vs:
        s.add(v)
    total = sum(energy_maps(v) for v in vs)
    res = s.result(FACE_REGIONS)
    np.testing.assert_allclose(res["border_ratio"], border_ratio(total))
    assert res["border_ratio_max"] == pytest.approx(max(border_ratio(total)))
    assert res["images"] == 4 and "regions" in res
    with pytest.raises(ValueError):
        s.add(rng.normal(size=(2, 3, 16, 16)))
    ds = DecompositionStats(face_regions=True)
    for v in vs:
        ds.add(Decomposition(R=np.zeros((3, 16, 16)), components=v, output=v.sum(0)))
    out = ds.result()["spatial"]
    np.testing.assert_allclose(out["border_ratio"], res["border_ratio"])
    assert out["regions"]["share"]["eyes"] == res["regions"]["share"]["eyes"]


def test_detail_border_ratio_is_the_content_baseline():
    """border_ratio_detail is the ratio of x − R over all images: a busy border in the images shows there."""
    side = 20
    x = np.zeros((3, side, side))
    x[:, 0, :] = 1.0  # the image itself has a bright top row
    R = np.zeros_like(x)
    v = np.stack([x / 2, x / 2])  # the components add exactly that detail
    ds = DecompositionStats()
    ds.add(Decomposition(R=R, components=v, output=R + v.sum(0), input=x))
    sp = ds.result()["spatial"]
    assert sp["border_ratio_detail"] == pytest.approx(sp["border_ratio_mean"])
    assert sp["border_ratio_detail"] == pytest.approx(border_ratio(energy_maps(x[None]))[0])
