"""The per-epoch diagnostics of train-classifier as the figure draws them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from branchspec.figures.classifier_epochs import (draw_epoch_diagnostics, draw_silence_over_training, draw_silence_vs_m,
                                                 epoch_diagnostics, silence_curves, silence_vs_m, turned_off)


def test_epoch_diagnostics_normalises_and_skips_old_entries(tmp_path):
    epochs = [{"epoch": 1, "branch_norm": [2.0, 8.0, 4.0]}]  # written before weight norms were logged
    epochs += [{"epoch": e, "branch_norm": [1.0, 0.5, 0.05], "branch_weight_norm": [3.0, 2.0, 1.0 - 0.1 * e],
                "test_saturated": 0.1 * e} for e in (2, 3)]
    (tmp_path / "diagnostics.json").write_text(json.dumps({"epochs": epochs}))
    d = epoch_diagnostics(tmp_path)
    np.testing.assert_allclose(d["response"][0], [0.25, 1.0, 0.5])
    np.testing.assert_allclose(d["response"][1], [1.0, 0.5, 0.05])
    assert d["weight_epoch"].tolist() == [2, 3]
    np.testing.assert_allclose(d["weight_norm"][:, 2], [0.8, 0.7])
    np.testing.assert_allclose(d["saturated"], [0.2, 0.3])
    assert draw_epoch_diagnostics(tmp_path, tmp_path / "d.png").stat().st_size > 0


def test_head_norms_and_decay_prediction_when_logged(tmp_path):
    epochs = [{"epoch": e, "branch_norm": [1.0, 0.5], "branch_weight_norm": [3.0, 2.0], "branch_head_norm": [1.0, 0.1 * e],
               "weight_decay_exponent": 0.1 * e, "test_saturated": 0.5} for e in (1, 2, 3)]
    (tmp_path / "diagnostics.json").write_text(json.dumps({"epochs": epochs}))
    d = epoch_diagnostics(tmp_path)
    np.testing.assert_allclose(d["head_norm"][:, 1], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(d["decay"], [0.1, 0.2, 0.3])
    assert draw_epoch_diagnostics(tmp_path, tmp_path / "d.png").stat().st_size > 0
    old = tmp_path / "old"  # a run that predates both: no heads, no decay unless given
    old.mkdir()
    for e in epochs:
        del e["branch_head_norm"], e["weight_decay_exponent"]
    (old / "diagnostics.json").write_text(json.dumps({"epochs": epochs}))
    d = epoch_diagnostics(old)
    assert d["head_norm"].size == 0 and d["decay"].size == 0
    assert draw_epoch_diagnostics(old, old / "d.png", decay=[0.1, 0.2, 0.3]).stat().st_size > 0


def test_silence_curves_count_branches_under_the_threshold(tmp_path):
    runs = {}
    for name, last in (("a", [4.0, 4.0, 4.0]), ("b", [4.0, 0.3, 0.2])):
        run = tmp_path / name
        run.mkdir()
        epochs = [{"epoch": 1, "branch_norm": [4.0, 2.0, 0.2]}, {"epoch": 2, "branch_norm": last}]
        (run / "diagnostics.json").write_text(json.dumps({"epochs": epochs}))
        (run / "metrics.csv").write_text("epoch,train_clamped\n1,0.1\n2,0.5\n")
        runs[name] = run
    a, b = silence_curves(runs["a"]), silence_curves(runs["b"])
    assert a["silent"].tolist() == [1, 0] and b["silent"].tolist() == [1, 2]
    np.testing.assert_allclose(a["weakest"], [0.05, 1.0])
    np.testing.assert_allclose(b["weakest"], [0.05, 0.05])
    assert silence_curves(runs["b"], threshold=0.06)["silent"].tolist() == [1, 1]
    assert draw_silence_over_training(runs, tmp_path / "s.png").stat().st_size > 0


def test_silence_vs_m_counts_per_epoch_and_marks_unreached_epochs(tmp_path):
    runs = {}
    for m, norms in ((2, [[1.0, 0.5]] * 3), (4, [[1.0, 0.5, 0.4, 0.3], [1.0, 0.5, 0.05, 0.3]])):
        run = tmp_path / f"M{m}"
        run.mkdir()
        epochs = [{"epoch": e + 1, "branch_norm": n} for e, n in enumerate(norms)]
        (run / "diagnostics.json").write_text(json.dumps({"epochs": epochs}))
        runs[m] = run
    s = silence_vs_m(runs, epochs=[2, 3])
    assert s["M"].tolist() == [2, 4] and s["last"].tolist() == [3, 2]
    np.testing.assert_array_equal(s["silent"], [[0, 1], [0, np.nan]])  # M = 4 has not reached epoch 3
    np.testing.assert_array_equal(s["active"], [[2, 3], [2, np.nan]])
    assert silence_vs_m(runs)["epoch"].tolist() == [1, 2]  # by default only epochs every run has
    assert draw_silence_vs_m(runs, tmp_path / "m.png").stat().st_size > 0


def test_silence_vs_m_window_reads_the_majority_of_the_last_epochs(tmp_path):
    norms = [[1.0, 0.05], [1.0, 0.05], [1.0, 0.5], [1.0, 0.05]]  # branch 2 under the threshold at epochs 1, 2, 4
    (tmp_path / "diagnostics.json").write_text(json.dumps({"epochs": [{"epoch": e + 1, "branch_norm": n}
                                                                       for e, n in enumerate(norms)]}))
    runs = {2: tmp_path}
    assert silence_vs_m(runs, [3])["silent"].tolist() == [[0]]  # the plain rule: that epoch alone
    assert silence_vs_m(runs, [3], window=3)["silent"].tolist() == [[1]]  # 2 of epochs 1-3
    assert silence_vs_m(runs, [3], window=2)["silent"].tolist() == [[1]]  # 1 of 2: half counts
    assert silence_vs_m(runs, [4], window=3)["silent"].tolist() == [[1]]  # epochs 2-4: 2 of 3
    with pytest.raises(ValueError, match="window"):
        silence_vs_m(runs, [3], window=0)


def test_turned_off_reads_the_weights_before_the_last_layer(tmp_path):
    # branch 1: total norm sqrt(0.5^2 + 0.3^2), then only its last layer (0.3) is left; branch 0 keeps its body
    body = [[1.0, 0.5], [1.0, 0.005], [1.0, 0.002]]
    epochs = [{"epoch": e + 1, "branch_norm": [1.0, 0.1], "branch_weight_norm": np.hypot(b, 0.3).tolist(),
               "branch_head_norm": [0.3, 0.3], "test_saturated": 0.0} for e, b in enumerate(body)]
    (tmp_path / "diagnostics.json").write_text(json.dumps({"epochs": epochs}))
    t = turned_off(tmp_path)
    assert t["off"].tolist() == [0, 1, 1] and t["since"] == {1: 2}
    assert turned_off(tmp_path, tol=1e-3)["off"].tolist() == [0, 0, 0]
    for e in epochs:
        del e["branch_head_norm"]
    (tmp_path / "diagnostics.json").write_text(json.dumps({"epochs": epochs}))
    assert turned_off(tmp_path)["off"].size == 0  # a run that did not log its last layers


def test_silence_vs_m_by_weights_counts_turned_off_branches(tmp_path):
    body = [[1.0, 0.5], [1.0, 0.005], [1.0, 0.002]]  # branch 1 off from epoch 2; its response stays 0.5
    epochs = [{"epoch": e + 1, "branch_norm": [1.0, 0.5], "branch_weight_norm": np.hypot(b, 0.3).tolist(),
               "branch_head_norm": [0.3, 0.3], "test_saturated": 0.0} for e, b in enumerate(body)]
    (tmp_path / "diagnostics.json").write_text(json.dumps({"epochs": epochs}))
    runs = {2: tmp_path}
    assert silence_vs_m(runs, [1, 3])["silent"].tolist() == [[0], [0]]  # by the responses: never silent
    assert silence_vs_m(runs, [1, 3], threshold=1e-2, rule="weights")["silent"].tolist() == [[0], [1]]
    assert draw_silence_vs_m(runs, tmp_path / "w.png", [3], 1e-2, rule="weights").stat().st_size > 0
    with pytest.raises(ValueError, match="rule"):
        silence_vs_m(runs, [3], rule="centred")
