"""analysis.npz: the packed Hessians (branchspec.compact) and the figures drawn from the arrays given, in either form."""

import json
from pathlib import Path

import numpy as np
import pytest

from branchspec import compact
from branchspec.budget import MemoryBudgetError
from branchspec.figures.classifier import draw_analysis


def _hessian(p=24, seed=0):
    """A symmetric (P, P) matrix with entries over ~9 decades, both signs and exact zeros (what Fig. 5 draws)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((p, p)) * 10.0 ** rng.uniform(-6, 3, (p, p))
    a[rng.random((p, p)) < 0.05] = 0.0
    return np.triu(a) + np.triu(a, 1).T  # (P, P)


def _colours(d, lo, hi):
    """The magma colour of every entry of ``d`` as imshow normalises it between ``lo`` and ``hi``."""
    import matplotlib
    from matplotlib.colors import Normalize

    return matplotlib.colormaps["magma"](Normalize(lo, hi)(d), bytes=True)


def test_packed_hessian_keeps_every_colour_sign_and_bin():
    h = _hessian()
    packed = compact.pack_log_abs(h, "hessian_init")
    iu = np.triu_indices(24)
    assert packed["hessian_init_bins"].dtype == np.uint8 and packed["hessian_init_bins"].shape == (len(iu[0]),)
    back = compact.unpack_log_abs(packed, "hessian_init")
    assert back.dtype == np.float32 and back.shape == h.shape and (back == back.T).all()
    np.testing.assert_array_equal(np.sign(back), np.sign(h.astype(np.float32)))
    d, d_back = compact.log_magnitude(h), compact.log_magnitude(back)
    lo, hi = d.min(), d.max()
    assert d_back.min() == pytest.approx(lo) and d_back.max() == pytest.approx(hi)  # the same normalisation
    np.testing.assert_array_equal(_colours(d_back, d_back.min(), d_back.max()), _colours(d, lo, hi))
    assert np.abs(d_back - d).max() <= (hi - lo) / 256 + 1e-9  # within one colour bin, in decades
    with pytest.raises(Exception, match="upper triangle"):
        compact.triangle_side(len(iu[0]) + 1)


def _constructed(folder: Path, packed: bool, m=3, k=4):
    """A small analysis (analysis.json + analysis.npz) as ``analyze`` writes it, and the arrays in it."""
    rng = np.random.default_rng(1)
    h = {"init": _hessian(12, 2), "trained": _hessian(12, 3)}
    galleries = [rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8) for n in (3, 2)]
    res = {"class_names": [f"c{i}" for i in range(k)], "class_means": rng.standard_normal((m, k, k)).tolist(),
           "covariance": rng.standard_normal((m, m)).tolist(), "branch_norms": [3.0, 2.0, 0.1],
           "active_branches": [0, 1], "active_fraction_threshold": 0.1, "num_active": 2, "num_silent": 1,
           "confidence_samples": {"labels": [0, 0, 1, 2, 3, 3], "values": rng.standard_normal((m, 6)).tolist()},
           "galleries": {"top_fraction": 0.07, "pairs": [
               {"branch": 0, "class": 1, "confidence": [0.9, 0.8, 0.7], "shown": [4, 5, 6]},
               {"branch": 2, "class": 3, "confidence": [0.5, 0.4], "shown": [7, 8]}]},
           "ablation": {"full": 0.5, "without_branch": [0.4, 0.45, 0.5], "keep_top": {"1": 0.3, "2": 0.45, "3": 0.5}},
           "hessian": {"available": True, "init": {"boundaries": [0, 4, 8, 12]},
                       "trained": {"boundaries": [0, 4, 8, 12]}}}
    arrays = {"outputs": rng.standard_normal((m, 6, k)).astype(np.float32), "labels": np.arange(6) % k,
              **{f"gallery_{i}": g for i, g in enumerate(galleries)}}
    for tag, mat in h.items():
        arrays.update(compact.pack_log_abs(mat, f"hessian_{tag}") if packed else {f"hessian_{tag}": mat})
    folder.mkdir()
    (folder / "analysis.json").write_text(json.dumps(res))
    np.savez_compressed(folder / "analysis.npz", **arrays)
    return res, galleries, h


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "float32-matrices"])
def test_draw_analysis_draws_the_arrays_given(tmp_path, drawn, packed):
    res, galleries, h = _constructed(tmp_path / "a", packed)
    paths = draw_analysis(tmp_path / "a")
    assert [p.name for p in paths] == ["fig6_class_means.png", "fig5_covariance.png", "fig7_confidence.png",
                                       "fig8_galleries.png", "ablation.png", "fig5_hessian.png"]
    fig6, fig5, fig7, fig8, ablation, hess = drawn
    cm = np.asarray(res["class_means"])
    panels = [np.asarray(im) for ims in fig6.images for im in ims]  # the class-mean panels, then the colour bars
    for want in [cm[:, np.arange(4), np.arange(4)]] + list(cm):  # (M, K) true-class outputs, each branch's (K, C)
        assert sum(p.shape == want.shape and np.allclose(p, want) for p in panels) == 1
    np.testing.assert_allclose(fig5.images[0][0], res["covariance"])
    np.testing.assert_allclose(fig7.images[0][0], res["confidence_samples"]["values"])
    shown = [ims[0] for ims in fig8.images if ims]  # row by row, one image per axis
    assert len(shown) == 5
    for got, want in zip(shown, [im for g in galleries for im in g]):
        np.testing.assert_array_equal(got, want)
    (ks, acc), = ablation.lines[1]  # accuracy with the top-k branches kept
    assert list(ks) == [1, 2, 3] and list(acc) == [0.3, 0.45, 0.5]
    for ims, tag in zip(hess.images, ("init", "trained")):
        d = compact.log_magnitude(h[tag])
        got = np.asarray(ims[0])
        if packed:  # the same colour for every entry, each within one bin
            np.testing.assert_array_equal(_colours(got, got.min(), got.max()), _colours(d, d.min(), d.max()))
        else:
            np.testing.assert_allclose(got, d)
    for fig, p in zip(drawn, paths):
        fig.check_png(p)


def test_unpacking_is_checked_against_the_budget(tmp_path, monkeypatch):
    _constructed(tmp_path / "a", packed=True)
    monkeypatch.setenv("BRANCHSPEC_MEMORY_GB", "0.61")  # room for the interpreter, not for 6 float64 copies
    monkeypatch.setattr(compact, "UNPACK_COPIES", 10**6)
    with pytest.raises(MemoryBudgetError, match="analysis.npz"):
        compact.load_expanded(tmp_path / "a" / "analysis.npz")
